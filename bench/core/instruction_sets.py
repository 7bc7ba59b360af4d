"""Instruction sets as rows record them (imports nothing of bench: the run, the analysis and rendering all read it): which of a row's figures depend on the kernels its host ran, and the
rule that decides whether a stored quality is reused on another host or scored again. What this host runs is read by
bench.core.env.instruction_set; rows carry the same columns (ISA_COLUMNS)."""

from __future__ import annotations

ISA_COLUMNS = ("cpu_flags", "torch_cpu_capability", "torch_quantized_engine", "faiss_simd", "onnxruntime_provider",
               "int8_level")


def int8_kernels(runtime: str, isa: dict) -> str:
    """Which int8 kernels a dynamically quantized network ran on (`runtime` torch or onnxruntime), from instruction-set
    columns (`isa`): what int8 scores and vectors depend on, beside the model."""
    if runtime == "onnxruntime":
        return f"onnxruntime {str(isa['onnxruntime_provider']).split()[0]} {isa['int8_level']}"
    return f"torch {isa['torch_quantized_engine']} {isa['int8_level']}"


def isa_dependent_runtimes(row) -> tuple[str, ...]:
    """The runtimes whose int8 kernels a row's quality depends on: an int8 query or document network, an int8
    reranker. fp32 networks and faiss's codes are not in it: their scores move in the last bits across instruction sets,
    not their rankings (measured by `python -m bench recheck`: fp32 rows moved dev nDCG@10 by at most 0.0007)."""
    runtimes = []
    if row.get("query_precision") == "int8" or row.get("doc_precision") == "int8":
        runtimes.append(row.get("query_runtime") or "torch")
    identity = row.get("reranker_identity") or ""
    if "|int8" in identity:
        runtimes.append("onnxruntime" if "|onnxruntime" in identity else "torch")
    return tuple(dict.fromkeys(runtimes))


def rescored(row, here: dict) -> bool:
    """The rule that decides whether a stored row's quality is scored again on a host whose instruction-set columns are
    `here` rather than reused: its quality depends on int8 kernels (`isa_dependent_runtimes`) and the row ran other
    ones, or did not record which (rows from before the instruction-set columns)."""
    runtimes = isa_dependent_runtimes(row)
    if not runtimes:
        return False
    if not row.get("int8_level"):
        return True
    stored = {name: row.get(name) for name in ISA_COLUMNS}
    return any(int8_kernels(r, stored) != int8_kernels(r, here) for r in runtimes)
