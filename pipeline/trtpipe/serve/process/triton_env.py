"""The environment tritonserver and its Python-backend stubs start with: an allowlist, never the caller's whole
environment.

Why: `trtpipe serve` runs where a build ran, so its environment often holds HF_TOKEN, cloud credentials and the
frontend's own API keys (TRTPIPE_API_KEYS). Nothing in Triton needs them (every model loads from local files in
the repository), and every process that holds a secret is one more place it can leak from: a crash dump, a
model's debug print, /proc/<pid>/environ of a long-lived process, a core file. So Triton gets only what makes
it run, and what tunes it:

- PATH, HOME, USER, LOGNAME, TMPDIR/TMP/TEMP, TZ, LANG/LANGUAGE/LC_*, XDG_*: the process basics (HOME and XDG_*
  for the libraries' cache directories).
- LD_LIBRARY_PATH, LD_PRELOAD, PYTHON*, VIRTUAL_ENV, CONDA_PREFIX: the stub embeds this interpreter and must
  load the same libraries and packages (launcher.find_tritonserver adds its own entries on top).
- OMP_*, OPENBLAS_*, MKL_*, KMP_*, GOTO_*, MALLOC_*: threads and allocator of the engine's numeric libraries.
- CUDA_*, NVIDIA_*, NCCL_*, CUBLAS_*, CUDNN_*, TRTLLM_*, TLLM_*, TORCH_*, PYTORCH_*: GPUs and TensorRT-LLM
  (device selection, orchestrator mode, PyTorch's allocator on the trtllm-pytorch path).
- OMPI_*, PMIX_*, OPAL_*, UCX_*, UCC_*, HPCX_*: mpirun and its ranks (leader mode, tp*pp > 1; the NGC image's
  HPC-X sets OPAL_PREFIX).
- TRITON_*, GRPC_*: the server's own knobs.
- HF_*, TRANSFORMERS_*, TOKENIZERS_*: offline and cache settings (HF_HOME, HF_HUB_OFFLINE) for a tokenizer
  loaded inside Triton.
- TRTPIPE_*: trtpipe's own settings (TRTPIPE_HOME, ...).

Whatever the allowlist admits, a name that looks like a secret is dropped: it contains TOKEN, SECRET, PASSW,
CREDENTIAL or PRIVATE, or KEY/KEYS as a word (TRTPIPE_API_KEYS, NGC_API_KEY, HF_TOKEN, HF_TOKEN_PATH). A tool
that does need a credential inside Triton is out of this allowlist by design: pass it explicitly.
"""

from __future__ import annotations

import re
from typing import Mapping

ALLOWED_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "TMP", "TEMP", "TZ", "LANG", "LANGUAGE",
    "LD_LIBRARY_PATH", "LD_PRELOAD", "VIRTUAL_ENV", "CONDA_PREFIX",
})
ALLOWED_PREFIXES = (
    "LC_", "XDG_", "PYTHON",
    "OMP_", "OPENBLAS_", "MKL_", "KMP_", "GOTO_", "MALLOC_",
    "CUDA_", "NVIDIA_", "NCCL_", "CUBLAS_", "CUDNN_", "TRTLLM_", "TLLM_", "TORCH_", "PYTORCH_",
    "OMPI_", "PMIX_", "OPAL_", "UCX_", "UCC_", "HPCX_",
    "TRITON_", "GRPC_",
    "HF_", "TRANSFORMERS_", "TOKENIZERS_",
    "TRTPIPE_",
)
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|PRIVATE|(^|_)KEYS?(_|$)", re.IGNORECASE)


def is_passed_to_triton(name: str) -> bool:
    """Allowlisted, and not named like a secret."""
    allowed = name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES)
    return allowed and not SECRET_NAME.search(name)


def triton_environment(environ: Mapping[str, str], *overrides: Mapping[str, str]) -> dict[str, str]:
    """`environ` filtered by the allowlist, then each of `overrides` on top (trtpipe's own settings for the
    launch, which are never filtered: they are ours)."""
    env = {name: value for name, value in environ.items() if is_passed_to_triton(name)}
    for extra in overrides:
        env.update(extra)
    return env
