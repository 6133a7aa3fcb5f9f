"""The API Specification, generated from the frontend's own code so it cannot drift from what `serve` enforces.

- Routes and the statuses each can answer: the FastAPI app's OpenAPI schema (serve/api/app.py create_app, built
  without Triton or a repository); FastAPI's 422 is left out because serve answers validation errors with 400
  (its RequestValidationError handler).
- Parameter families: every property of the request models (ChatCompletionRequest, CompletionRequest), grouped by
  name; a property no family claims is listed under "other", so nothing is left out.
- Errors: the closed set in serve/errors.py (its constructor / status / type / code table).
- Limits: the model's ServingSpec (what the build publishes and the frontend reads) and the frontend's defaults
  (FrontendSettings: body size, request deadline, admission bounds).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

FAMILIES = [
    ("input", ("model", "messages", "prompt", "suffix", "echo", "user", "n", "best_of")),
    ("length and stopping", ("max_tokens", "max_completion_tokens", "min_tokens", "stop", "ignore_eos")),
    ("sampling", ("temperature", "top_p", "top_k", "min_p", "seed", "frequency_penalty", "presence_penalty",
                  "repetition_penalty", "logit_bias")),
    ("streaming", ("stream", "stream_options")),
    ("structured outputs", ("response_format", "structured_outputs", "guided_json", "guided_regex",
                            "guided_grammar", "guided_choice")),
    ("tools", ("tools", "tool_choice", "parallel_tool_calls")),
    ("log-probs", ("logprobs", "top_logprobs")),
]
REQUEST_MODELS = {"/v1/chat/completions": "ChatCompletionRequest", "/v1/completions": "CompletionRequest"}
_ERROR_ROW = re.compile(r"^\s{4}(\w+)\s+(\d\w\w)\s+(\w+)\s+(.*)$")


@functools.lru_cache(maxsize=1)
def openapi_schema() -> dict:
    from trtpipe.serve.api.app import FrontendSettings, create_app

    return create_app(FrontendSettings(repo=Path("/nonexistent"))).openapi()


def routes(schema: dict) -> list[list[str]]:
    rows = []
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            codes = sorted(c for c in op.get("responses", {}) if c != "422")
            rows.append([method.upper(), f"`{path}`", op.get("summary", ""), ", ".join(codes)])
    return rows


def parameter_families(schema: dict) -> list[list[str]]:
    rows = []
    for path, model in REQUEST_MODELS.items():
        props = set(schema["components"]["schemas"][model]["properties"])
        claimed = set()
        for family, names in FAMILIES:
            present = [n for n in names if n in props]
            claimed |= set(present)
            if present:
                rows.append([f"`{path}`", family, ", ".join(f"`{n}`" for n in present)])
        if props - claimed:
            rows.append([f"`{path}`", "other", ", ".join(f"`{n}`" for n in sorted(props - claimed))])
    return rows


def error_table() -> list[list[str]]:
    from trtpipe.serve import errors

    rows = []
    for line in (errors.__doc__ or "").splitlines():
        m = _ERROR_ROW.match(line)
        if m and m.group(1) != "constructor":
            rows.append([m.group(2), f"`{m.group(3)}`", m.group(4), m.group(1)])
    return rows


def limits(plan) -> list[list[str]]:
    from trtpipe.backend_registry import get_backend
    from trtpipe.serve.api.app import FrontendSettings

    spec = get_backend(plan.config.backend).serving_spec(plan.config)
    s = FrontendSettings(repo=Path("."))
    return [["model", spec.model_name],
            ["max_tokens default / limit", f"{spec.default_max_tokens} / {spec.max_max_tokens}"],
            ["prompt + max_tokens", f"<= {spec.max_seq_len} tokens (prompt <= {spec.max_input_len}); over: 400 "
                                    "`context_length_exceeded`"],
            ["requests per model", f"{min(s.max_running, spec.max_concurrency)} running + "
                                   f"{min(s.max_waiting, spec.max_queued)} queued, then 429 with Retry-After"],
            ["request body", f"<= {s.max_body_bytes} bytes (`--max-body-bytes`), then 413"],
            ["request deadline", f"{s.request_timeout_s:g} s (`--request-timeout`), then 504"],
            ["top_logprobs", f"<= {spec.max_top_log_probs}" if spec.max_top_log_probs
             else "0: the sampled token's only"],
            ["guided decoding", spec.guided_decoding or "off: structured outputs and forced tool calls get a 400"],
            ["API keys", "`--api-key` / `--api-key-file` / $TRTPIPE_API_KEYS: without one, 401"]]
