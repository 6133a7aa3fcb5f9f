"""The GPUs trtpipe plans for: a data table, not branches.

Memory is what `nvidia-smi --query-gpu=memory.total` reports (MiB), not the marketing number, because
that is what TensorRT-LLM's `kv_cache_free_gpu_mem_fraction` is taken from. Bandwidth is the vendor's
peak HBM/GDDR figure; decode at batch 1 reaches roughly 60-80% of it in practice, so the planner's
bandwidth ceiling is an upper bound, never a prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

from trtpipe.errors import ConfigError

MIB = 1 << 20
GIB = 1 << 30


@dataclass(frozen=True)
class GpuSpec:
    name: str
    memory_mib: int
    bandwidth_gb_s: float  # peak memory bandwidth, 1e9 bytes/s
    compute_capability: tuple[int, int]
    interconnect: str  # how tensor-parallel ranks talk: "nvlink" or "pcie"
    smi_names: tuple[str, ...] = ()  # substrings of nvidia-smi's `name` that identify this GPU

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * MIB

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GIB

    @property
    def supports_fp8(self) -> bool:
        # FP8 tensor cores: Ada (8.9) and Hopper (9.0) or newer. TensorRT-LLM also disables FP8 context
        # FMHA below SM 89 (tensorrt_llm/builder.py), so an FP8 engine is refused on older GPUs.
        return self.compute_capability >= (8, 9)

    @property
    def sm(self) -> int:
        return self.compute_capability[0] * 10 + self.compute_capability[1]


GPUS: dict[str, GpuSpec] = {g.name: g for g in (
    GpuSpec("h100-sxm-80gb", memory_mib=81559, bandwidth_gb_s=3350.0, compute_capability=(9, 0),
            interconnect="nvlink", smi_names=("H100 80GB HBM3", "H100-SXM")),
    GpuSpec("h200-141gb", memory_mib=143771, bandwidth_gb_s=4800.0, compute_capability=(9, 0),
            interconnect="nvlink", smi_names=("H200",)),
    GpuSpec("a100-80gb", memory_mib=81920, bandwidth_gb_s=2039.0, compute_capability=(8, 0),
            interconnect="nvlink", smi_names=("A100-SXM4-80GB", "A100 80GB")),
    GpuSpec("l40s-48gb", memory_mib=46068, bandwidth_gb_s=864.0, compute_capability=(8, 9),
            interconnect="pcie", smi_names=("L40S",)),
)}


def get_gpu(name: str) -> GpuSpec:
    try:
        return GPUS[name]
    except KeyError:
        raise ConfigError(f"unknown GPU {name!r}", where="--gpu",
                          fix=f"use one of: {', '.join(GPUS)}") from None


def match_smi_name(smi_name: str) -> GpuSpec | None:
    """The table entry for a name as nvidia-smi prints it ("NVIDIA H100 80GB HBM3"), or None."""
    for gpu in GPUS.values():
        if any(s.lower() in smi_name.lower() for s in gpu.smi_names):
            return gpu
    return None
