"""Step 1 (here, CPU): export SciFact's guarded splits, pseudo-queries and BM25 top-40 lists, and MiniLM at fp16,
to .cedata/ (git-ignored) for recipes.py on a GPU machine.

    echo /.cedata/ >> .git/info/exclude; BENCH_DATA_DIR=../shared/datasets .venv/bin/python benchmarks/ce_recipes/export.py
"""
import gzip, json, re
import numpy as np, torch
from pathlib import Path
from bench.data.splits import Protocol, training_splits, judged_documents
from bench.search.indexes import make_index
from bench.core.env import cpu_count
from bench.models.encoders import resolve_model

root = Path("../shared/datasets")
splits = training_splits("scifact", root, Protocol(dev_fraction=0.25, seed=0, guard=True), None, needs_dev=True)
train, dev, test = splits.train, splits.dev, splits.test
banned = judged_documents(test, dev)
doc_pos = {d: i for i, d in enumerate(train.doc_ids)}
rng = np.random.default_rng(0)
cands = [i for i, t in enumerate(train.doc_titles) if t and train.doc_ids[i] not in banned]
titles = [(train.doc_titles[i], i) for i in cands]
# ICT: one sentence (6..40 words) per document as query; the document with that sentence removed as positive
sents = []
for i in cands:
    body = train.doc_texts[i]
    t = train.doc_titles[i]
    abstract = body[len(t):].strip() if body.startswith(t) else body
    ss = [s for s in re.split(r"(?<=[.!?])\s+", abstract) if 6 <= len(s.split()) <= 40]
    if len(ss) >= 3:
        s = ss[rng.integers(len(ss))]
        sents.append((s, i, (t + " " + abstract.replace(s, " ")).strip()))
bm25 = make_index("bm25s"); bm25.fit(train.doc_texts, cpu_count()); bm25.set_search(40)
def top(texts): return bm25.batch_query(texts, cpu_count()).ids.tolist()
out = {
  "doc_ids": train.doc_ids, "doc_texts": train.doc_texts,
  "train": [{"text": t, "pos": sorted(doc_pos[d] for d, g in train.qrels[q].items() if g > 0)} for q, t in zip(train.query_ids, train.query_texts)],
  "dev": [{"text": t, "qrels": {str(doc_pos[d]): g for d, g in dev.qrels[q].items()}} for q, t in zip(dev.query_ids, dev.query_texts)],
  "titles": [{"text": t, "pos": [i]} for t, i in titles],
  "sents": [{"text": s, "pos": [i], "pos_text": pt} for s, i, pt in sents],
}
for key in ["train", "dev", "titles", "sents"]:
    for row, ids in zip(out[key], top([r["text"] for r in out[key]])):
        row["bm25"] = ids
print({k: len(v) for k, v in out.items()})
with gzip.open(".cedata/data.json.gz", "wt") as f: json.dump(out, f)
# model at fp16 (fits the transfer limit); loaded back as fp32 there
import shutil
src = Path(resolve_model("sentence-transformers/all-MiniLM-L6-v2")); dst = Path(".cedata/model")
if dst.exists(): shutil.rmtree(dst)
shutil.copytree(src, dst)
from safetensors.torch import load_file, save_file
sd = load_file(src / "model.safetensors"); save_file({k: v.half() for k, v in sd.items()}, dst / "model.safetensors")
