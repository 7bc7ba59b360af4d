"""Step 2 (GPU machine, carry .cedata): train each cross-encoder recipe and print its dev nDCG@10.

    python3 benchmarks/ce_recipes/recipes.py 430   # seconds after which no new recipe starts; ONLY=a,b selects

The loop mirrors bench/models/train/cross.py (listwise loss, AdamW, warmup then decay, batch of 2 lists); weights are
MiniLM's rounded to fp16 for the transfer, training runs in fp32/TF32, so figures differ from a CPU run by
about 0.015 (the base recipe: 0.613 here, 0.628 trained by the harness on the CPU). For choosing a recipe only.
"""
import gzip, json, math, os, sys, time
import numpy as np, torch, torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from sentence_transformers import SentenceTransformer

T0 = time.time(); OUT = os.environ.get("OUT", "/tmp"); BUDGET = float(sys.argv[1]) if len(sys.argv) > 1 else 450
torch.backends.cuda.matmul.allow_tf32 = True
D = json.load(gzip.open(".cedata/data.json.gz", "rt")); docs = D["doc_texts"]
SMOKE = bool(os.environ.get("SMOKE")); dev = "cpu" if SMOKE else "cuda"
if SMOKE:
    D["dev"] = D["dev"][:3]; D["train"] = D["train"][:4]; D["titles"] = D["titles"][:6]; D["sents"] = D["sents"][:6]
    def enc(texts): return F.normalize(torch.randn(len(texts), 384), dim=1)
else:
    st = SentenceTransformer(".cedata/model", device=dev).float()
    def enc(texts): return st.encode(texts, batch_size=256, convert_to_tensor=True, normalize_embeddings=True).float()
E = enc(docs)
for key in ["train", "dev", "titles", "sents"]:
    Q = enc([r["text"] for r in D[key]])
    S = Q @ E.T
    top = S.topk(200, dim=1).indices.cpu().numpy()
    for r, ids in zip(D[key], top): r["dense"] = ids.tolist()
    D[key + "_emb"] = Q
print("encoded", round(time.time() - T0, 1), flush=True)

def ndcg10(order, qrels):
    g = [qrels.get(str(j), 0) for j in order[:10]]
    dcg = sum(x / math.log2(i + 2) for i, x in enumerate(g))
    ideal = sorted(qrels.values(), reverse=True)[:10]
    idcg = sum(x / math.log2(i + 2) for i, x in enumerate(ideal))
    return dcg / idcg if idcg else 0.0

def mean_ndcg(lists): return float(np.mean([ndcg10(l, r["qrels"]) for l, r in zip(lists, D["dev"])]))
base = {"dense20": mean_ndcg([r["dense"][:20] for r in D["dev"]]), "bm25_20": mean_ndcg([r["bm25"][:20] for r in D["dev"]])}
print("first stages dev", base, flush=True)

def minmax(x): x = np.asarray(x, float); return (x - x.min()) / (x.max() - x.min()) if x.max() > x.min() else np.zeros_like(x)

def run(name, loss="listwise", epochs=1, lr=5e-5, bq=2, neg=7, lo=3, hi=40, max_len=192, titles=1000, sents=0,
        mine="dense+bm25", kd=0.0, tau=0.05, seed=0, warm=0.1):
    torch.manual_seed(seed); rng = np.random.default_rng(seed)
    ex = []  # (query text, positive text, pool, query emb row key)
    def add(rows, key, n=None):
        idx = range(len(rows)) if n is None else sorted(np.random.default_rng(seed).permutation(len(rows))[:n])
        for i in idx:
            r = rows[i]; pos = set(r["pos"])
            ranked = ([r["dense"]] if "dense" in mine else []) + ([r["bm25"]] if "bm25" in mine else [])
            pool = list(dict.fromkeys(j for ids in ranked for j in ids[lo:hi] if j not in pos))
            for p in sorted(pos):
                ex.append((r["text"], r.get("pos_text", docs[p]), p, pool, D[key + "_emb"][i]))
    add(D["train"], "train"); 
    if titles: add(D["titles"], "titles", titles)
    if sents: add(D["sents"], "sents", sents)
    tok = AutoTokenizer.from_pretrained(".cedata/model")
    model = AutoModelForSequenceClassification.from_pretrained(".cedata/model", num_labels=1, dtype=torch.float32).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    spe = (len(ex) + bq - 1) // bq; total = spe * epochs
    sch = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / max(1.0, warm * total), max(0.0, 1 - s / total)))
    t = time.time(); model.train(); losses = []
    for ep in range(epochs):
        order = rng.permutation(len(ex))
        for step in range(spe):
            batch = [ex[i] for i in order[step * bq:(step + 1) * bq]]
            qs, ds, tl = [], [], []
            for q, ptext, p, pool, qe in batch:
                negs = rng.choice(pool, size=neg, replace=len(pool) < neg)
                qs += [q] * (1 + neg); ds += [ptext] + [docs[j] for j in negs]
                if kd: tl.append(qe @ E[[p, *negs]].T)
            enc_ = tok(qs, ds, truncation="longest_first", max_length=max_len, padding=True, return_tensors="pt").to(dev)
            logits = model(**enc_).logits[:, 0].view(len(batch), 1 + neg)
            if loss == "listwise": l = F.cross_entropy(logits, torch.zeros(len(batch), dtype=torch.long, device=dev))
            elif loss == "bce":
                lab = torch.zeros_like(logits); lab[:, 0] = 1; l = F.binary_cross_entropy_with_logits(logits, lab)
            if kd:
                teacher = torch.softmax(torch.stack(tl) / tau, dim=1)
                l = l + kd * F.kl_div(F.log_softmax(logits, dim=1), teacher, reduction="batchmean")
            l.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); sch.step(); opt.zero_grad()
            losses.append(l.item())
    train_s = time.time() - t
    model.eval()
    def score(lists):
        out = []
        with torch.no_grad():
            for r, l in zip(D["dev"], lists):
                e = tok([r["text"]] * len(l), [docs[j] for j in l], truncation="longest_first", max_length=max_len, padding=True, return_tensors="pt").to(dev)
                out.append(model(**e).logits[:, 0].float().cpu().numpy())
        return out
    res = {"name": name, "examples": len(ex), "steps": total, "pairs": total * bq * (1 + neg), "train_s": round(train_s, 1),
           "loss_last": float(np.mean(losses[-50:]))}
    for fs, R in [("dense", 20), ("bm25", 20), ("dense", 100)]:
        lists = [r[fs][:R] for r in D["dev"]]; sc = score(lists)
        alone = mean_ndcg([[l[i] for i in np.argsort(-s, kind="stable")] for l, s in zip(lists, sc)])
        fused = {}
        for a in np.linspace(0, 1, 11):
            fused[round(a, 1)] = mean_ndcg([[l[i] for i in np.argsort(-(a * minmax(s) + (1 - a) * minmax(-np.arange(len(l)))), kind="stable")] for l, s in zip(lists, sc)])
        best = max(fused, key=fused.get)
        res[f"{fs}{R}_alone"] = round(alone, 4); res[f"{fs}{R}_fused"] = round(fused[best], 4); res[f"{fs}{R}_alpha"] = best
    res["elapsed"] = round(time.time() - T0, 1)
    print(json.dumps(res), flush=True)
    with open(f"{OUT}/results.jsonl", "a") as f: f.write(json.dumps(res) + "\n")
    del model, opt; torch.cuda.empty_cache()

RECIPES = [
    ("base", {}),
    ("base-seed1", {"seed": 1}),
    ("titles3000", {"titles": 3000}),
    ("sents2000", {"sents": 2000}),
    ("kd1", {"kd": 1.0}),
    ("ep2", {"epochs": 2}),
    ("titles3000-kd1", {"titles": 3000, "kd": 1.0}),
    ("sents2000-kd1", {"sents": 2000, "kd": 1.0}),
    ("lr2e-5-ep2", {"lr": 2e-5, "epochs": 2}),
    ("neg15-bq1", {"neg": 15, "bq": 1}),
    ("len128-titles3000", {"max_len": 128, "titles": 3000}),
    ("bce", {"loss": "bce"}),
    ("kd3", {"kd": 3.0}),
    ("sents4000", {"sents": 4000, "titles": 0}),
    ("ep3", {"epochs": 3}),
    ("sents2000-kd3", {"sents": 2000, "kd": 3.0}),
    ("kd1-ep2", {"kd": 1.0, "epochs": 2}),
    ("sents2000-kd1-tau02", {"sents": 2000, "kd": 1.0, "tau": 0.02}),
    ("sents1000-titles2000-kd1", {"sents": 1000, "titles": 2000, "kd": 1.0}),
    ("all-titles-sents", {"titles": 4757, "sents": 4700}),
]
only = os.environ.get("ONLY")
for name, kw in RECIPES:
    if only and name not in only.split(","): continue
    if time.time() - T0 > BUDGET: print("budget reached before", name); break
    run(name, **kw)
