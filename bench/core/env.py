"""Run metadata: what code, libraries and hardware produced a measurement."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata

import psutil

from bench.core.instruction_sets import ISA_COLUMNS, rescored
from bench.core.instruction_sets import int8_kernels as kernels_of

PACKAGES = ("numpy", "faiss-cpu", "hnswlib", "scann", "torch", "sentence-transformers", "transformers",
            "ir-measures", "pandas", "pyarrow")


def cpu_count() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


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
    instruction-set columns or this host's (bench.core.instruction_sets.int8_kernels)."""
    return kernels_of(runtime, isa if isa is not None else instruction_set())


def rescored_here(row) -> bool:
    """Whether a stored row's quality is scored again on this host rather than reused
    (bench.core.instruction_sets.rescored: int8 kernels other than this host's, or unrecorded)."""
    return rescored(row, instruction_set())


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
