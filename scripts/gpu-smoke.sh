#!/usr/bin/env bash
# GPU smoke test of trtpipe's TensorRT-LLM backends (trt-engine and trtllm-pytorch): the steps that cannot run
# on a machine without a GPU. One command checks both.
#
# Run it from the repository root inside the pinned image (README.md, "The GPU path", explains each step; the image
# and every version below come from the one table, pipeline/trtpipe/trt/toolchain.py):
#   docker run --rm --gpus all --ipc=host --ulimit memlock=-1 --shm-size=16g -e HF_TOKEN \
#     -v "$PWD":/workspace -w /workspace nvcr.io/nvidia/tritonserver:25.12-trtllm-python-py3 \
#     bash scripts/gpu-smoke.sh
#
# Environment:
#   SMOKE_MODELS   trt-engine configs to build, serve and benchmark, in order
#                  [default: "tinyllama-trt llama-8b"; llama-8b needs HF_TOKEN with access to Llama 3.1/3.2]
#   SMOKE_PYTORCH_MODELS  trtllm-pytorch configs, run after those [default: "tinyllama-pytorch"; add
#                  llama-8b-pytorch (FP8 + EAGLE-3, HF_TOKEN) on Ada/Hopper; "" skips the backend]
#   SMOKE_OUT      where logs, dry runs and bench reports go [default: gpu-smoke-results/<UTC time>]
#   TRTPIPE_HOME   artifact cache and model repositories [default: $SMOKE_OUT/home]
#   SMOKE_SKIP_INSTALL=1   trtpipe is already installed (e.g. in the docker/Dockerfile image)
#   SMOKE_PORT     frontend port [default: 9000]; Triton uses 8000-8002
#
# Every step either passes or stops the script with "gpu-smoke: FAILED at <step>" and the tail of its log.
set -Eeuo pipefail

SMOKE_MODELS=${SMOKE_MODELS:-"tinyllama-trt llama-8b"}
SMOKE_PYTORCH_MODELS=${SMOKE_PYTORCH_MODELS-"tinyllama-pytorch"}
SMOKE_OUT=${SMOKE_OUT:-"gpu-smoke-results/$(date -u +%Y%m%dT%H%M%SZ)"}
SMOKE_PORT=${SMOKE_PORT:-9000}
mkdir -p "$SMOKE_OUT"
SMOKE_OUT=$(cd "$SMOKE_OUT" && pwd)
export TRTPIPE_HOME=${TRTPIPE_HOME:-"$SMOKE_OUT/home"}
export TOKENIZERS_PARALLELISM=false
# From the toolchain table (standard library only: readable before trtpipe is installed).
toolchain() { PYTHONPATH="$PWD/pipeline${PYTHONPATH:+:$PYTHONPATH}" python3 -m trtpipe.trt.toolchain get "$1"; }
IMAGE=$(toolchain image)
TRTLLM_VERSION=$(toolchain tensorrt_llm)                       # pinned for both GPU backends
TRTLLM_PYTORCH_MIN=$(PYTHONPATH="$PWD/pipeline" python3 -c 'from trtpipe.trt.llm_api_dialects import OLDEST; print(OLDEST)' 2>/dev/null || echo "$TRTLLM_VERSION")
MODELOPT_CONSTRAINT=$(toolchain modelopt)
URL="http://127.0.0.1:$SMOKE_PORT"
STEP="start"
LOG=""
SERVER_PID=""

step() {
    STEP="$1"
    LOG="$SMOKE_OUT/$(echo "$1" | tr -c 'A-Za-z0-9._-' '_' | sed 's/_*$//').log"
    printf '\n==> %s  (log: %s)\n' "$1" "$LOG"
}

die() {
    printf '\ngpu-smoke: FAILED at "%s": %s\n' "$STEP" "$*" >&2
    exit 1
}

stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}

on_error() {
    local rc=$?
    printf '\ngpu-smoke: FAILED at "%s" (exit %s)\n' "$STEP" "$rc" >&2
    if [[ -n "$LOG" && -s "$LOG" ]]; then
        printf -- '--- last 40 lines of %s ---\n' "$LOG" >&2
        tail -n 40 "$LOG" >&2
    fi
    if [[ -f "$TRTPIPE_HOME/logs/tritonserver.log" ]]; then
        printf -- '--- last 40 lines of %s ---\n' "$TRTPIPE_HOME/logs/tritonserver.log" >&2
        tail -n 40 "$TRTPIPE_HOME/logs/tritonserver.log" >&2
    fi
    stop_server
    exit "$rc"
}
trap on_error ERR
trap stop_server EXIT

run() {  # run a command with its output in $LOG (and on the terminal)
    "$@" 2>&1 | tee -a "$LOG"
}

# ---------------------------------------------------------------------------------------------------
step "machine"
[[ -f pyproject.toml && -d pipeline/trtpipe ]] || die "run from the trtpipe repository root (cd to the checkout)"
command -v nvidia-smi >/dev/null || die "nvidia-smi not found: no NVIDIA driver visible (docker run --gpus all ...)"
run nvidia-smi --query-gpu=index,name,memory.total,compute_cap --format=csv
[[ $(nvidia-smi --list-gpus | wc -l) -ge 1 ]] || die "nvidia-smi lists no GPU"
command -v tritonserver >/dev/null || die "tritonserver is not on PATH: run inside $IMAGE"
if [[ -n "$SMOKE_MODELS" ]]; then
    command -v trtllm-build >/dev/null || die "trtllm-build is not on PATH: run inside the TensorRT-LLM image"
fi
found=$(python3 -c 'import tensorrt_llm; print(tensorrt_llm.__version__)' 2>/dev/null | tail -n 1) \
    || die "python3 cannot import tensorrt_llm: run inside the TensorRT-LLM image"
if [[ -n "$SMOKE_MODELS" ]]; then
    [[ "$found" == "$TRTLLM_VERSION"* ]] || die "tensorrt_llm $found is installed; $IMAGE documents $TRTLLM_VERSION"
fi
if [[ -n "$SMOKE_PYTORCH_MODELS" ]]; then
    python3 -c "import sys; v = tuple(int(x) for x in '$found'.split('.')[:2]); w = tuple(int(x) for x in '$TRTLLM_PYTORCH_MIN'.split('.')[:2]); sys.exit(v < w)" \
        || die "tensorrt_llm $found is installed; backend trtllm-pytorch needs >= $TRTLLM_PYTORCH_MIN"
    python3 -c 'from tensorrt_llm import LLM, SamplingParams' || die "tensorrt_llm has no LLM API (LLM, SamplingParams)"
fi
engine_files=(/app/examples/models/core/llama/convert_checkpoint.py /app/examples/quantization/quantize.py
              /app/all_models/inflight_batcher_llm/preprocessing/1/model.py
              /app/all_models/inflight_batcher_llm/postprocessing/1/model.py)
[[ -n "$SMOKE_MODELS" ]] || engine_files=()
for f in "${engine_files[@]}"; do
    [[ -f "$f" ]] || die "$f is missing: this is not the pinned image layout (set TRTPIPE_TRTLLM_EXAMPLES / TRTPIPE_TRTLLM_MODELS)"
done
for m in $SMOKE_MODELS $SMOKE_PYTORCH_MODELS; do
    [[ -f "build_configs/$m.yaml" ]] || die "no build config build_configs/$m.yaml"
    if grep -q '^  hf: meta-llama/' "build_configs/$m.yaml" && [[ -z "${HF_TOKEN:-}" ]]; then
        die "$m downloads gated Llama weights: export HF_TOKEN (docker run -e HF_TOKEN) or drop it from SMOKE_MODELS"
    fi
done

# ---------------------------------------------------------------------------------------------------
if [[ "${SMOKE_SKIP_INSTALL:-0}" != 1 ]]; then
    step "install"
    # As docker/Dockerfile: keep what TensorRT-LLM was built against (the table's ModelOpt constraint, numpy < 2).
    printf 'nvidia-modelopt%s\nnumpy<2\n' "$MODELOPT_CONSTRAINT" > "$SMOKE_OUT/constraints.txt"
    PIP_BREAK_SYSTEM_PACKAGES=1 run python3 -m pip install -q -c "$SMOKE_OUT/constraints.txt" -e ".[test]"
fi
command -v trtpipe >/dev/null || die "trtpipe is not on PATH after the install"

step "unit tests"
run python3 -m pytest tests/unit -q -p no:cacheprovider

step "reference path on the image's Triton (integration + e2e suites)"
# The embedded tiny-llama on the reference engine, served by this image's tritonserver (found on PATH).
TRTPIPE_HOME="$SMOKE_OUT/home-reference" run python3 -m pytest tests/integration tests/e2e -q -p no:cacheprovider

# ---------------------------------------------------------------------------------------------------
wait_ready() {  # $1: seconds
    local deadline=$((SECONDS + $1))
    until curl -fsS "$URL/health/ready" >/dev/null 2>&1; do
        kill -0 "$SERVER_PID" 2>/dev/null || die "trtpipe serve exited during start-up"
        (( SECONDS < deadline )) || die "not ready after $1 s"
        sleep 5
    done
}

check_openai() {  # $1: model, $2: backend. Greedy: the streamed text joined must equal the non-streamed text.
    python3 - "$URL/v1" "$1" "$2" <<'PY'
import sys
from openai import OpenAI

url, model, backend = sys.argv[1], sys.argv[2], sys.argv[3]
client = OpenAI(base_url=url, api_key="unused", max_retries=0)
ids = [m.id for m in client.models.list().data]
assert model in ids, f"{model} not in /v1/models: {ids}"
messages = [{"role": "user", "content": "Name three primary colors."}]
kw = dict(model=model, messages=messages, max_tokens=48, temperature=0)
full = client.chat.completions.create(**kw)
text = full.choices[0].message.content
assert text and text.strip(), "empty completion"
chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
joined = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert joined == text, f"stream != non-stream:\n{joined!r}\n{text!r}"
assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens, "usage differs"
assert full.system_fingerprint.startswith(f"trtpipe-{backend}-"), full.system_fingerprint
print(f"ok: {model}: {full.usage.completion_tokens} tokens: {text[:80]!r}")
PY
}

check_ensemble() {  # $1: model. The plain-Triton path: <model>-ensemble with the image's pre/postprocessing.
    local out
    out=$(curl -fsS -X POST "http://127.0.0.1:8000/v2/models/$1-ensemble/generate_stream" \
        -d '{"text_input": "The capital of France is", "max_tokens": 16, "stream": true}') \
        || die "$1-ensemble did not answer on Triton's HTTP port"
    grep -q '"text_output"' <<<"$out" || die "$1-ensemble answered without text_output: ${out:0:300}"
    echo "ok: $1-ensemble streamed text_output"
}

backend_of() {  # the backend a config names (after install: trtpipe resolves extends:)
    python3 -c "from trtpipe.config import load_config; print(load_config('$1').backend)"
}

for m in $SMOKE_MODELS $SMOKE_PYTORCH_MODELS; do
    repo="$TRTPIPE_HOME/repos/$m"
    backend=$(backend_of "$m")

    step "$m dry run"
    trtpipe build "$m" --repo "$repo" --dry-run > "$SMOKE_OUT/dry-run-$m.txt"
    grep -c '^ *\$ ' "$SMOKE_OUT/dry-run-$m.txt" | sed 's/^/commands: /' | tee -a "$LOG"

    step "$m build"
    run trtpipe build "$m" --repo "$repo"
    run trtpipe models --repo "$repo"
    if [[ "$backend" == trt-engine ]]; then
        # Every model of the set is published and pinned to the same version.
        for kind in engine preprocessing postprocessing ensemble; do
            [[ -f "$repo/$m-$kind/config.pbtxt" ]] || die "$m-$kind/config.pbtxt was not published"
        done
    else
        # One Python model driving tensorrt_llm.LLM, with its LLM API arguments beside the checkpoint.
        live=$(python3 -c "from pathlib import Path; from trtpipe.repo import layout; print(layout.live_version(Path('$repo/$m-engine')))")
        [[ -f "$repo/$m-engine/$live/engine/llm_api_options.yaml" ]] || die "$m: no llm_api_options.yaml published"
        run cat "$repo/$m-engine/$live/engine/llm_api_options.yaml"
    fi

    step "$m rebuild is a cache hit"
    run trtpipe build "$m" --repo "$repo"
    grep -q "unchanged, still live" "$LOG" || die "the second build of $m was not a no-op"

    step "$m serve"
    trtpipe serve --repo "$repo" --host 127.0.0.1 --port "$SMOKE_PORT" >>"$LOG" 2>&1 &
    SERVER_PID=$!
    wait_ready 1200

    step "$m OpenAI client checks"
    run check_openai "$m" "$backend"

    if [[ "$backend" == trt-engine ]]; then
        step "$m ensemble (plain Triton clients)"
        run check_ensemble "$m"
    fi

    step "$m bench"
    run trtpipe bench run --url "$URL/v1" --model "$m" --concurrency 1,8 --num-prompts 32 \
        --input-len 256 --output-len 128 --label "gpu-smoke $m" --metrics-url "$URL/metrics" \
        --out "$SMOKE_OUT/bench-$m"

    step "$m stop"
    stop_server
done

STEP="done"
printf '\ngpu-smoke: PASSED (%s). Results in %s\n' "$SMOKE_MODELS $SMOKE_PYTORCH_MODELS" "$SMOKE_OUT"
