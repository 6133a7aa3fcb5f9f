"""The GPUs trtpipe plans for: a data table, not branches.

Memory is what `nvidia-smi --query-gpu=memory.total` reports (MiB), not the marketing number, because
that is what TensorRT-LLM's `kv_cache_free_gpu_mem_fraction` is taken from; where no nvidia-smi figure was at
hand it is the datasheet's GB converted to MiB and `memory_source` says so. Bandwidth is the vendor's peak
HBM/GDDR figure; decode at batch 1 reaches roughly 60-80% of it in practice, so the planner's bandwidth ceiling
is an upper bound, never a prediction. `source` names the NVIDIA datasheet each row's figures come from.
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
    source: str = ""  # the datasheet the bandwidth (and datasheet memory) come from
    memory_source: str = "nvidia-smi"  # or "datasheet" (GB -> MiB, before the driver's reservation)

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


H100 = "https://www.nvidia.com/en-us/data-center/h100/ (datasheet: SXM 3.35 TB/s, PCIe 2 TB/s, 80 GB)"
H200 = "https://www.nvidia.com/en-us/data-center/h200/ (datasheet: 141 GB HBM3e, 4.8 TB/s)"
B200 = "https://www.nvidia.com/en-us/data-center/dgx-b200/ (DGX B200: 1,440 GB and 64 TB/s for 8 GPUs)"
GB200 = "https://www.nvidia.com/en-us/data-center/gb200-nvl72/ (GB200 NVL72: 13.4 TB HBM3e, 576 TB/s for 72 GPUs)"
A100 = "https://www.nvidia.com/en-us/data-center/a100/ (datasheet: 40 GB 1,555 GB/s; 80 GB SXM 2,039 GB/s)"
L40S = "https://www.nvidia.com/en-us/data-center/l40s/ (datasheet: 48 GB GDDR6, 864 GB/s)"
L4 = "https://www.nvidia.com/en-us/data-center/l4/ (datasheet: 24 GB GDDR6, 300 GB/s)"

GPUS: dict[str, GpuSpec] = {g.name: g for g in (
    GpuSpec("h100-sxm-80gb", memory_mib=81559, bandwidth_gb_s=3350.0, compute_capability=(9, 0),
            interconnect="nvlink", smi_names=("H100 80GB HBM3", "H100-SXM"), source=H100),
    GpuSpec("h100-pcie-80gb", memory_mib=81559, bandwidth_gb_s=2000.0, compute_capability=(9, 0),
            interconnect="pcie", smi_names=("H100 PCIe",), source=H100),
    GpuSpec("h200-141gb", memory_mib=143771, bandwidth_gb_s=4800.0, compute_capability=(9, 0),
            interconnect="nvlink", smi_names=("H200",), source=H200),
    GpuSpec("gb200-186gb", memory_mib=177383, bandwidth_gb_s=8000.0, compute_capability=(10, 0),
            interconnect="nvlink", smi_names=("GB200",), source=GB200, memory_source="datasheet"),
    GpuSpec("b200-180gb", memory_mib=183359, bandwidth_gb_s=8000.0, compute_capability=(10, 0),
            interconnect="nvlink", smi_names=("B200",), source=B200),
    GpuSpec("a100-80gb", memory_mib=81920, bandwidth_gb_s=2039.0, compute_capability=(8, 0),
            interconnect="nvlink", smi_names=("A100-SXM4-80GB", "A100 80GB"), source=A100),
    GpuSpec("a100-40gb", memory_mib=40960, bandwidth_gb_s=1555.0, compute_capability=(8, 0),
            interconnect="nvlink", smi_names=("A100-SXM4-40GB", "A100-PCIE-40GB"), source=A100),
    GpuSpec("l40s-48gb", memory_mib=46068, bandwidth_gb_s=864.0, compute_capability=(8, 9),
            interconnect="pcie", smi_names=("L40S",), source=L40S),
    GpuSpec("l4-24gb", memory_mib=23034, bandwidth_gb_s=300.0, compute_capability=(8, 9),
            interconnect="pcie", smi_names=("L4",), source=L4),
)}


def get_gpu(name: str) -> GpuSpec:
    try:
        return GPUS[name]
    except KeyError:
        raise ConfigError(f"unknown GPU {name!r}", where="--gpu",
                          fix=f"use one of: {', '.join(GPUS)}") from None


def match_smi_name(smi_name: str) -> GpuSpec | None:
    """The table entry for a name as nvidia-smi prints it ("NVIDIA H100 80GB HBM3"), or None. The longest
    matching substring wins, so "NVIDIA GB200" is not taken for a B200 nor "NVIDIA L40S" for an L4."""
    matches = [(len(s), gpu) for gpu in GPUS.values() for s in gpu.smi_names if s.lower() in smi_name.lower()]
    return max(matches, key=lambda m: m[0])[1] if matches else None
