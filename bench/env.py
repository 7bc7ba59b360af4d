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


@lru_cache(maxsize=1)
def host_id() -> str:
    """Identifies the hardware (CPU model, cores, memory), not the hostname: cells measured elsewhere are redone."""
    parts = [cpu_model(), str(cpu_count()), str(round(psutil.virtual_memory().total / 2**30)), platform.machine()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


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
        "config_hash": config_hash,
    }


def measured_now() -> datetime:
    """The time a row is measured (its `measured_at`; `timestamp` is its run's start)."""
    return datetime.now(timezone.utc)
