"""The plan as the four documents the serving guide asks for (Serving Configuration, Scaling Plan, API
Specification, Performance Baseline) plus plan.json. Markdown only; every number comes from plan.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

from trtpipe.deploy.sizing import dynamo_sizing
from trtpipe.hardware import GIB
from trtpipe.plan import RUNTIME_OVERHEAD_BYTES, UTILIZATION_TARGET, Plan

# The frontend's Prometheus names the autoscaler and dashboards use (vLLM-compatible, so existing
# dashboards and adapters work unchanged).
QUEUE_METRIC = "vllm:num_requests_waiting"
RUNNING_METRIC = "vllm:num_requests_running"
TTFT_METRIC = "vllm:time_to_first_token_seconds"
FRONTEND_PORT = 9000
TRITON_REPO_IN_CONTAINER = "/models"


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def summary_text(plan: Plan) -> str:
    c, t = plan.config, plan.target
    lines = [f"{c.name} on {plan.gpu.name} x{plan.world_size} (tp={c.parallelism.tp}, pp={c.parallelism.pp})",
             f"  weights/GPU      {_gib(t.weight_bytes)}   reserve {_gib(t.reserve_bytes)}",
             f"  KV/token         {t.kv_bytes_per_token_total} B (model), {t.kv_bytes_per_token} B per GPU"]
    for pool in plan.pools:
        lines.append(f"  KV pool {pool.name:<12} {_gib(pool.pool_bytes)} = {pool.tokens} tokens ({pool.limited_by})")
    lines += [f"  concurrency      {plan.concurrency} sequences of {plan.input_len}+{plan.output_len} tokens",
              f"  smallest TP      {plan.smallest_tp} (one max_seq_len sequence); "
              f"{plan.smallest_tp_full_batch} (a full batch)",
              f"  decode ceiling   {plan.decode_tokens_per_s:.0f} tokens/s per sequence at batch 1",
              f"  host RAM         {_gib(plan.host_ram_bytes)} to convert"]
    if plan.replicas is not None:
        lines.append(f"  replicas         {plan.replicas} for {plan.request_rate:g} req/s")
    dynamo = dynamo_sizing(c, plan.replicas)
    if dynamo["backend_supported"]:
        lines.append(f"  on Dynamo        {dynamo['command']}: {dynamo['workers']} worker(s) x "
                     f"{dynamo['gpus_per_worker']} GPU(s)")
    lines += [f"  warning: {w}" for w in plan.warnings]
    if not plan.fits:
        lines.append("  DOES NOT FIT: raise tp, quantize, or lower the engine limits")
    return "\n".join(lines)


def _launch_section(plan: Plan) -> str:
    from trtpipe.backend_registry import get_backend

    c = plan.config
    backend = get_backend(c.backend)
    lines = ["```sh", f"trtpipe build {c.name}          # " + " -> ".join(s.name for s in backend.stages) + ", publish",
             f"trtpipe serve --host 0.0.0.0   # Triton + the OpenAI frontend on :{FRONTEND_PORT}", "```"]
    commands = backend.plan_commands(c, plan.draft, plan.world_size)
    if not commands:
        return "\n".join(lines + ["", backend.plan_note()])
    return "\n".join(lines + commands)


def _weights_format(plan: Plan) -> str:
    q, pre = plan.config.quantization, plan.checkpoint_quant
    if q:
        return q.format
    return f"{pre.describe()}, as the checkpoint holds them" if pre else plan.config.dtype


def serving_configuration(plan: Plan) -> str:
    c, t, g, e, s = plan.config, plan.target, plan.gpu, plan.config.engine, plan.config.serving
    q = c.quantization
    source = (f"{c.source.hf}@{c.source.revision}" if c.source.hf
              else c.source.path or f"synthetic:{c.source.synthetic}")
    from trtpipe.backend_registry import get_backend

    framework = get_backend(c.backend).framework
    rows = [["Framework", framework], ["Model", source],
            ["Parameters", f"{plan.arch.num_params / 1e9:.2f} B"],
            ["Precision", f"{c.dtype}; weights {_weights_format(plan)}; KV cache "
                          f"{(q.kv_cache_dtype if q and q.kv_cache_dtype else c.dtype)}"],
            ["Parallelism", f"tp={c.parallelism.tp}, pp={c.parallelism.pp} ({plan.world_size} x {g.name})"],
            ["Engine limits", f"batch {e.max_batch_size}, input {e.max_input_len}, seq {e.max_seq_len}, "
                              f"tokens/step {e.max_num_tokens}, block {e.tokens_per_block} tokens"],
            ["Scheduler", f"{s.batch_scheduler_policy}; KV reuse {'on' if s.enable_kv_cache_reuse else 'off'}; "
                          f"chunked context {'on' if s.enable_chunked_context else 'off'}"]]
    if c.speculation:
        from trtpipe.backend_registry import get_backend

        rows.append(["Speculation", get_backend(c.backend).describe_speculation(c)])
    mem_rows = [["Weights", _gib(t.weight_bytes)],
                ["Activations (estimate)", _gib(t.activation_bytes)],
                ["Runtime overhead (estimate)", _gib(RUNTIME_OVERHEAD_BYTES)],
                ["KV bytes per token", f"{t.kv_bytes_per_token_total} (model), {t.kv_bytes_per_token} per GPU"]]
    if plan.draft_memory:
        d = plan.draft_memory
        mem_rows += [["Draft weights", _gib(d.weight_bytes)], ["Draft reserve", _gib(d.reserve_bytes)],
                     ["Draft KV bytes per token", f"{d.kv_bytes_per_token} per GPU"]]
    mem_rows += [[f"KV pool: {p.name}", f"{_gib(p.pool_bytes)} = {p.tokens} tokens (limited by {p.limited_by})"]
                 for p in plan.pools]
    mem_rows += [["GPU memory", f"{g.memory_mib} MiB ({g.memory_gib:.1f} GiB), KV fraction "
                                f"{s.kv_cache_free_gpu_mem_fraction}"],
                 [f"Concurrent sequences at {plan.input_len}+{plan.output_len} tokens", plan.concurrency],
                 ["Decode ceiling, batch 1", f"{plan.decode_tokens_per_s:.0f} tokens/s per sequence "
                                             f"({g.bandwidth_gb_s:.0f} GB/s / bytes read per token)"],
                 ["Host RAM to convert", _gib(plan.host_ram_bytes)]]
    if plan.calibration_gpu_bytes:
        n = math.ceil(plan.calibration_gpu_bytes / g.memory_bytes)
        mem_rows.append(["GPU memory to calibrate", f"{_gib(plan.calibration_gpu_bytes)} ({n} x {g.name})"])
    tp_rows = [[r["tp"], f"{r['weights_gib']:.1f} GiB", r["kv_tokens"], r["concurrency"], "yes" if r["fits"] else "no"]
               for r in plan.tp_table]
    parts = [f"# Serving Configuration: {c.name}", "", c.description or "", "", _table(["", ""], rows), "",
             "## Memory per GPU", "", _table(["", ""], mem_rows), "",
             "## Tensor parallelism", "",
             f"Smallest TP that holds one {e.max_seq_len}-token sequence: **{plan.smallest_tp}**; that holds a full "
             f"batch of {e.max_batch_size} at {plan.input_len}+{plan.output_len}: **{plan.smallest_tp_full_batch}**.",
             "", _table(["tp", "weights/GPU", "KV tokens", "concurrency", "fits"], tp_rows), "",
             "## Launch", "", _launch_section(plan)]
    if plan.warnings:
        parts += ["", "## Warnings", ""] + [f"- {w}" for w in plan.warnings]
    if not plan.fits:
        parts += ["", "**This configuration does not fit**: raise tp, quantize further, or lower the engine limits."]
    return "\n".join(parts) + "\n"


def scaling_plan(plan: Plan) -> str:
    c = plan.config
    source = "measured (`trtpipe bench`)" if plan.per_replica_rps_measured else \
        "bandwidth-bound estimate: an upper bound until replaced by `trtpipe bench` numbers"
    rows = [["Per-replica throughput", f"{plan.per_replica_rps:.2f} req/s ({source})"],
            ["Utilization target", f"{UTILIZATION_TARGET:.0%} of that, for bursts"],
            ["GPUs per replica", plan.world_size]]
    if plan.replicas is not None:
        rows = [["Target request rate", f"{plan.request_rate:g} req/s"]] + rows + [
            ["Replicas", plan.replicas], ["GPUs", plan.replicas * plan.world_size]]
    queue_target = max(1, c.engine.max_batch_size // 8)
    lines = [f"# Scaling Plan: {c.name}", "", _table(["", ""], rows), "",
             "## Horizontal scaling", "",
             f"- One replica = one pod: Triton ({plan.world_size} GPU(s)) + the OpenAI frontend on port "
             f"{FRONTEND_PORT}. Scale by adding replicas; TP stays inside a node.",
             "- Load balancer: **least connections** (a Kubernetes Service with an ingress/gateway set to "
             "least-request). Requests are long-lived streams, so round-robin piles work on unlucky pods.",
             "- Prefix reuse is per replica; with a large shared system prompt, hash the prompt prefix to pick "
             "a replica (consistent hashing) to keep its KV blocks hot.",
             f"- A replica refuses work beyond frontend.max_concurrency ({c.frontend.max_concurrency}) + "
             f"max_queued ({c.frontend.max_queued}) with 429, so the balancer can retry elsewhere.",
             "", "## Autoscaling triggers", "",
             f"- Primary: HPA on `{QUEUE_METRIC}` (Pods metric via the Prometheus adapter), target average "
             f"**{queue_target}** waiting requests per pod (max_batch_size / 8).",
             f"- Secondary: TTFT p95 from `{TTFT_METRIC}` above the SLO for 2 minutes (alert, and scale out).",
             f"- Saturation signal: `{RUNNING_METRIC}` pinned at max_batch_size ({c.engine.max_batch_size}).",
             "- Scale up fast (a new replica needs minutes: image pull, engine load), scale down slowly "
             "(stabilization 600 s); preStop drains in-flight streams before a pod is removed.",
             "", "Manifests: `docker/k8s/` (Deployment with probes and drain, Service, HPA, nightly rebuild)."]
    dynamo = dynamo_sizing(c, plan.replicas)
    if dynamo["backend_supported"]:
        lines += ["", "## On NVIDIA Dynamo (many hosts)", "",
                  f"`{dynamo['command']}` writes the DynamoGraphDeployment: {dynamo['workers']} aggregated TensorRT-LLM "
                  f"worker(s) of {dynamo['gpus_per_worker']} GPU(s) ({dynamo['gpus']} GPUs) behind Dynamo's KV-aware "
                  "frontend (examples: `docker/k8s/dynamo/`). Splitting them into prefill and decode workers "
                  "(`--disaggregated`) is not sized by this plan."]
    return "\n".join(lines) + "\n"


def api_specification(plan: Plan) -> str:
    """Generated from the frontend's code (plan_api.py): routes and statuses from its OpenAPI schema, parameter
    families from its request models, errors from serve/errors.py, limits from the model's spec."""
    from trtpipe import plan_api

    schema = plan_api.openapi_schema()
    lines = [f"# API Specification: {plan.config.name}", "",
             f"OpenAI-compatible, base URL `http://HOST:{FRONTEND_PORT}/v1`; the official `openai` client works "
             "unchanged. Generated from the frontend's code (its OpenAPI schema at `/openapi.json`, its request "
             "models and its error table), so it lists what `trtpipe serve` enforces.", "",
             _table(["Method", "Path", "", "Statuses"], plan_api.routes(schema)), "", "## Parameters", "",
             _table(["Route", "Family", "Parameters"], plan_api.parameter_families(schema)), "",
             "A parameter a model cannot honour is refused with a 400 naming it, never ignored.", "",
             "## Limits", "", _table(["", ""], plan_api.limits(plan)), "", "## Streaming", "",
             "Server-sent events: `data: {chunk}` per token group, then `data: [DONE]`. Streamed text equals "
             "the non-streamed text byte for byte; usage is exact (`stream_options.include_usage`). A client "
             "disconnect cancels its request in the engine.", "", "## Errors", "",
             'Every error is the OpenAI envelope `{"error": {"message", "type", "param", "code"}}`.', "",
             _table(["Status", "Type", "Code", "Raised by"], plan_api.error_table())]
    return "\n".join(lines) + "\n"


def _measure_hint(plan: Plan) -> list[str]:
    c = plan.config
    return ["Measure with:", "", "```sh", "trtpipe serve &",
            f"trtpipe bench run --url http://127.0.0.1:{FRONTEND_PORT}/v1 --model {c.name} "
            f"--input-len {plan.input_len} --output-len {plan.output_len} "
            f"--concurrency 1,8,{max(plan.concurrency, 1)} --metrics-url http://127.0.0.1:{FRONTEND_PORT}/metrics "
            "--slo ttft=500ms,itl=50ms --out BENCH_DIR",
            "```", "", f"then: `trtpipe plan {c.name} --gpu {plan.gpu.name} --baseline BENCH_DIR --out DIR`."]


def performance_baseline(plan: Plan, baseline=None) -> str:
    """The Performance Baseline: from a `trtpipe bench run` report (bench.results.BenchResult) when given, with
    the plan's bandwidth bounds beside it; a placeholder naming the command that measures it otherwise."""
    c = plan.config
    bounds = [f"- decode ceiling at batch 1 (plan): {plan.decode_tokens_per_s:.0f} tokens/s per sequence",
              f"- bandwidth-bound aggregate at {plan.concurrency} sequences (plan): "
              f"{plan.decode_tokens_per_s_at_concurrency:.0f} tokens/s"]
    if baseline is None:
        rows = [[m, "not measured"] for m in ("TTFT p50 / p95", "ITL p50 / p95", "Output tokens/s (aggregate)",
                                              "Requests/s at SLO", "Max concurrent requests at SLO",
                                              "GPU utilization under load")]
        return "\n".join([f"# Performance Baseline: {c.name}", "",
                          "Placeholder: fill it from a real run on the target GPU (`--baseline`). The plan's "
                          "bounds, for comparison:", "", *bounds, "", _table(["Metric", "Value"], rows), "",
                          *_measure_hint(plan)]) + "\n"
    from trtpipe.plan_baseline import baseline_lines

    return "\n".join([f"# Performance Baseline: {c.name}", "", *baseline_lines(plan, baseline), "",
                      "The plan's bounds, for comparison:", "", *bounds]) + "\n"


def plan_json(plan: Plan) -> dict:
    t = plan.target
    return {"config": plan.config.name, "gpu": plan.gpu.name, "input_len": plan.input_len,
            "output_len": plan.output_len, "num_params": plan.arch.num_params,
            "weight_bytes_per_gpu": t.weight_bytes, "activation_bytes": t.activation_bytes,
            "kv_bytes_per_token": t.kv_bytes_per_token_total, "kv_bytes_per_token_per_gpu": t.kv_bytes_per_token,
            "kv_pools": [{"model": p.name, "bytes": p.pool_bytes, "tokens": p.tokens, "limited_by": p.limited_by}
                         for p in plan.pools],
            "concurrency": plan.concurrency, "fits": plan.fits, "smallest_tp": plan.smallest_tp,
            "smallest_tp_full_batch": plan.smallest_tp_full_batch, "tp_table": plan.tp_table,
            "decode_tokens_per_s_batch1": plan.decode_tokens_per_s, "host_ram_bytes": plan.host_ram_bytes,
            "calibration_gpu_bytes": plan.calibration_gpu_bytes, "request_rate": plan.request_rate,
            "per_replica_rps": plan.per_replica_rps, "per_replica_rps_measured": plan.per_replica_rps_measured,
            "replicas": plan.replicas, "dynamo": dynamo_sizing(plan.config, plan.replicas), "warnings": plan.warnings}


DOCUMENTS = {"serving-configuration.md": serving_configuration, "scaling-plan.md": scaling_plan,
             "api-specification.md": api_specification, "performance-baseline.md": performance_baseline}


def write_documents(plan: Plan, out_dir: Path, baseline=None) -> list[Path]:
    """The four documents and plan.json; `baseline`: a bench.results.BenchResult for the Performance Baseline."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, render in DOCUMENTS.items():
        (out_dir / name).write_text(render(plan, baseline) if render is performance_baseline else render(plan))
        written.append(out_dir / name)
    (out_dir / "plan.json").write_text(json.dumps(plan_json(plan), indent=2) + "\n")
    return written + [out_dir / "plan.json"]
