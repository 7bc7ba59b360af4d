"""Run metadata: what code, libraries and hardware produced a measurement."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata

import psutil

from bench.indexes.base import cpu_count

PACKAGES = ("numpy", "faiss-cpu", "hnswlib", "scann", "torch", "sentence-transformers", "transformers",
            "ir-measures", "pandas", "pyarrow")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The CPU flags that change which kernels the libraries run (and so latencies, and int8 scores): AVX2 and FMA (every
# host this harness supports), AVX-512 (faiss's AVX-512 build, NumPy's sorts, torch's AVX-512 kernels), VNNI (int8
# dot products without the saturating u8s8 path of plain AVX2) and AMX (tile int8 / bf16 matmul).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
             "amx_int8", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> tuple[str, ...]:
    """Which of ISA_FLAGS this CPU reports (/proc/cpuinfo), in ISA_FLAGS' order."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return tuple(f for f in ISA_FLAGS if f in present)
    except OSError:
        pass
    return ()


def int8_level(flags: tuple[str, ...] | None = None) -> str:
    """The int8 kernel family fbgemm (torch's x86 / fbgemm quantized engines) and ONNX Runtime's MLAS pick on a CPU with
    these flags: both choose by the CPU itself, not by ATEN_CPU_CAPABILITY; AVX2 without VNNI multiplies u8 x s8 with a
    saturating instruction (vpmaddubsw), so its int8 scores differ from VNNI's and AMX's."""
    flags = set(cpu_flags() if flags is None else flags)
    if "amx_int8" in flags:
        return "amx"
    if "avx512_vnni" in flags:
        return "avx512-vnni"
    if "avx_vnni" in flags:
        return "avx-vnni"
    if {"avx512f", "avx512bw"} <= flags:
        return "avx512"
    return "avx2"


@lru_cache(maxsize=1)
def instruction_set() -> dict[str, str]:
    """What picks the kernels a row's numbers come from: the CPU flags that matter, torch's CPU capability (which
    ATEN_CPU_CAPABILITY lowers) and quantized engine, the SIMD build faiss loaded (FAISS_OPT_LEVEL lowers it), and ONNX
    Runtime's version and execution provider (its MLAS kernels follow the CPU: `int8_level`)."""
    import faiss
    import torch

    faiss_options = faiss.get_compile_options().split() if hasattr(faiss, "get_compile_options") else []
    simd = [o for o in faiss_options if o.startswith(("AVX", "SVE", "NEON", "GENERIC"))]
    try:
        import onnxruntime

        provider = f"{onnxruntime.__version__} CPUExecutionProvider"
    except ImportError:
        provider = "absent"
    return {"cpu_flags": " ".join(cpu_flags()), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_quantized_engine": torch.backends.quantized.engine, "faiss_simd": " ".join(simd) or "generic",
            "onnxruntime_provider": provider, "int8_level": int8_level()}


ISA_COLUMNS = ("cpu_flags", "torch_cpu_capability", "torch_quantized_engine", "faiss_simd", "onnxruntime_provider",
               "int8_level")


@lru_cache(maxsize=1)
def host_id() -> str:
    """Identifies the hardware (CPU model, cores, memory) and the kernels it runs (`instruction_set`: the CPU flags that
    matter and the SIMD paths torch and faiss took), not the hostname: cells measured elsewhere are redone. A model
    string alone ("AMD EPYC") names virtual machines of other instruction sets alike."""
    isa = instruction_set()
    parts = [cpu_model(), str(cpu_count()), str(round(psutil.virtual_memory().total / 2**30)), platform.machine(),
             *(isa[name] for name in ISA_COLUMNS if name != "onnxruntime_provider")]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def int8_kernels(runtime: str, isa: dict | None = None) -> str:
    """Which int8 kernels a dynamically quantized network ran on (`runtime` torch or onnxruntime), from a row's
    instruction-set columns or this host's: what int8 scores and vectors depend on, beside the model."""
    isa = isa if isa is not None else instruction_set()
    if runtime == "onnxruntime":
        return f"onnxruntime {isa['onnxruntime_provider'].split()[0]} {isa['int8_level']}"
    return f"torch {isa['torch_quantized_engine']} {isa['int8_level']}"


def isa_dependent_runtimes(row) -> tuple[str, ...]:
    """The runtimes whose int8 kernels a row's quality depends on: an int8 query or document network, an int8
    reranker. fp32 networks and faiss's codes are not in it: their scores move in the last bits across instruction sets,
    not their rankings (measured: `python -m bench int8-isa`, the fp32 rows)."""
    runtimes = []
    if row.get("query_precision") == "int8" or row.get("doc_precision") == "int8":
        runtimes.append(row.get("query_runtime") or "torch")
    identity = row.get("reranker_identity") or ""
    if "|int8" in identity:
        runtimes.append("onnxruntime" if "|onnxruntime" in identity else "torch")
    return tuple(dict.fromkeys(runtimes))


def rescored_here(row) -> bool:
    """The rule that decides whether a stored row's quality is re-scored on this host rather than reused: its quality
    depends on int8 kernels (`isa_dependent_runtimes`) and the row ran other ones than this host would, or did not record
    which (rows from before the instruction-set columns)."""
    runtimes = isa_dependent_runtimes(row)
    if not runtimes:
        return False
    if not row.get("int8_level"):
        return True
    stored = {name: row.get(name) for name in ISA_COLUMNS}
    return any(int8_kernels(r, stored) != int8_kernels(r) for r in runtimes)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def run_metadata(config_hash: str) -> dict:
    """Columns shared by every row of one run."""
    return {
        "timestamp": datetime.now(timezone.utc),
        "git_sha": _git("rev-parse", "HEAD") or "unknown",
        # code that differs from the commit; the results and report a run writes do not count
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results", ":!report.md")),
        "versions": json.dumps(versions(), sort_keys=True),
        "cpu_model": cpu_model(),
        "n_cpus": cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "host_id": host_id(),
        **instruction_set(),
        "config_hash": config_hash,
    }


def measured_now() -> datetime:
    """The time a row is measured (its `measured_at`; `timestamp` is its run's start)."""
    return datetime.now(timezone.utc)
