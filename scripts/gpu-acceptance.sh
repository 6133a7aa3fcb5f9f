#!/usr/bin/env bash
# First contact with a GPU machine, in one command: trtpipe's GPU acceptance. Run it from the repository root
# inside the pinned image (its tag and every version come from pipeline/trtpipe/trt/toolchain.py):
#   docker run --rm --gpus all --ipc=host --ulimit memlock=-1 --shm-size=16g -e HF_TOKEN \
#     -v "$PWD":/workspace -w /workspace nvcr.io/nvidia/tritonserver:25.12-trtllm-python-py3 \
#     bash scripts/gpu-acceptance.sh [--repo MODEL_REPOSITORY] [--no-smoke]
#
# With no weights downloaded it first checks (python3 -m trtpipe.doctor, pipeline/trtpipe/doctor.py):
#   - the installed TensorRT-LLM / ModelOpt and the image's Triton release against the table's pinned row;
#   - every trtllm-pytorch config's LLM API arguments, and every llm_api_options.yaml published in --repo, through
#     this image's own TensorRT-LLM loader (update_llm_args_with_extra_dict) and TorchLlmArgs;
#   - every tensorrtllm model config in --repo against this image's tensorrtllm backend and its template;
#   - each live model's build record (TensorRT-LLM, image, GPU SM) against this machine, and serving preflight;
# refuses (exit 1) on any mismatch before Triton loads anything; then runs scripts/gpu-smoke.sh (build, serve, the
# openai client, bench). One report file, $ACCEPTANCE_OUT/report.json, says what passed: attach it to a bug.
#
# Environment: ACCEPTANCE_OUT [gpu-acceptance-results/<UTC time>]; SMOKE_* as scripts/gpu-smoke.sh;
# SMOKE_SKIP_INSTALL=1 when trtpipe is already installed (the docker/Dockerfile image).
set -Eeuo pipefail

[[ -f pyproject.toml && -d pipeline/trtpipe ]] || { echo "gpu-acceptance: run from the trtpipe checkout" >&2; exit 2; }
toolchain() { PYTHONPATH="$PWD/pipeline${PYTHONPATH:+:$PYTHONPATH}" python3 -m trtpipe.trt.toolchain get "$1"; }
IMAGE=$(toolchain image)
MODELOPT_CONSTRAINT=$(toolchain modelopt)
ACCEPTANCE_OUT=${ACCEPTANCE_OUT:-"gpu-acceptance-results/$(date -u +%Y%m%dT%H%M%SZ)"}
mkdir -p "$ACCEPTANCE_OUT"
echo "gpu-acceptance: pinned image $IMAGE; results in $ACCEPTANCE_OUT"

if [[ "${SMOKE_SKIP_INSTALL:-0}" != 1 ]]; then
    # As docker/Dockerfile: keep what TensorRT-LLM was built against (the table's ModelOpt constraint, numpy < 2).
    printf 'nvidia-modelopt%s\nnumpy<2\n' "$MODELOPT_CONSTRAINT" > "$ACCEPTANCE_OUT/constraints.txt"
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q -c "$ACCEPTANCE_OUT/constraints.txt" -e ".[test]"
fi
export SMOKE_SKIP_INSTALL=1
exec python3 -m trtpipe.doctor --out "$ACCEPTANCE_OUT" "$@"
