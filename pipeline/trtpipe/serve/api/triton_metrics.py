"""Triton's own metrics, merged into the frontend's /metrics, and the vLLM KV-cache series derived from them.

`trtpipe serve` binds Triton's metrics port to loopback (serve/process/launcher.py), so a Prometheus, a gateway's
endpoint picker or KEDA that scrapes the pod reaches the frontend's port only. This collector makes that port
carry everything: it mirrors Triton's /metrics text (nv_* series, the reference engine's trtpipe_engine_state, the
tensorrtllm backend's nv_trt_llm_* series) under its own names, and derives per model the KV-cache utilisation
gauges gateways and autoscalers read:

    trtpipe_kv_cache_usage_perc, vllm:kv_cache_usage_perc (vLLM v1), vllm:gpu_cache_usage_perc (the name in the
    Gateway API Inference Extension's model-server protocol, docs/proposals/003-model-server-protocol)

as a fraction 0..1 with label model_name (the served model: the Triton model name without "-engine"), from
- the reference engine: trtpipe_engine_state{state="kv_blocks_used"} / {state="kv_blocks_total"}
  (python_models/loop.py ENGINE_GAUGES, published by model_repo/engine/1/model.py);
- the tensorrtllm backend: nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction"}, else "used"/"max"
  (the series llm-d and the inference extension read for Triton TensorRT-LLM).
NOTE: the trtllm-pytorch Python model publishes no KV gauges yet, so its models get none.

A background thread fetches Triton's /metrics every `interval_s` (the scrape handler runs on the event loop and
must not block on a socket), so what a scrape sees is at most that old; trtpipe_triton_metrics_up says whether
the last fetch worked. Counters Triton names without `_total` keep their names (re-exposed untyped), so
dashboards written for Triton's names work unchanged.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from typing import Callable

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

ENV = "TRTPIPE_TRITON_METRICS_URL"
KV_USAGE_SERIES = ("trtpipe_kv_cache_usage_perc", "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
ENGINE_SUFFIX = "-engine"


def _fetch(url: str, timeout_s: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback Triton
        return response.read().decode()


def _served_name(triton_model: str) -> str:
    return triton_model[:-len(ENGINE_SUFFIX)] if triton_model.endswith(ENGINE_SUFFIX) else triton_model


def mirror_families(text: str) -> list[Metric]:
    """Triton's families as parsed, counters re-exposed untyped under the names Triton gave their samples."""
    out = []
    for family in text_string_to_metric_families(text):
        if family.type != "counter":
            out.append(family)
            continue
        # The parser appends _total to counter samples that lack it; put Triton's own names back.
        keep_total = f"\n{family.name}_total" in f"\n{text}"
        mirrored = Metric(family.name, family.documentation, "untyped")
        for s in family.samples:
            name = s.name if keep_total or not s.name.endswith("_total") else s.name[:-len("_total")]
            mirrored.add_sample(name, s.labels, s.value)
        out.append(mirrored)
    return out


def kv_usage(families: list[Metric]) -> dict[str, float]:
    """Served model -> KV-cache utilisation (0..1) from the engines' own block gauges."""
    blocks: dict[str, dict[str, float]] = {}
    for family in families:
        if family.name == "trtpipe_engine_state":
            for s in family.samples:
                key = {"kv_blocks_used": "used", "kv_blocks_total": "max"}.get(s.labels.get("state", ""))
                if key:
                    blocks.setdefault(_served_name(s.labels.get("model", "")), {})[key] = s.value
        elif family.name == "nv_trt_llm_kv_cache_block_metrics":
            for s in family.samples:
                kind = s.labels.get("kv_cache_block_type")
                if kind in ("used", "max", "fraction"):
                    blocks.setdefault(_served_name(s.labels.get("model", "")), {})[kind] = s.value
    usage = {}
    for model, b in blocks.items():
        if "fraction" in b:
            usage[model] = b["fraction"]
        elif b.get("max"):
            usage[model] = b.get("used", 0.0) / b["max"]
    return usage


class TritonMetricsMirror:
    """A prometheus_client collector: Triton's last fetched metrics plus the derived KV-usage gauges."""

    def __init__(self, url: str, interval_s: float = 2.0, fetch: Callable[[str], str] = _fetch):
        self.url, self.interval_s, self._fetch = url, interval_s, fetch
        self._families: list[Metric] = []
        self._up = 0.0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        """One fetch (the thread calls this every interval_s; tests call it directly)."""
        try:
            families = mirror_families(self._fetch(self.url))
            up = 1.0
        except Exception:  # noqa: BLE001 - Triton starting, restarting or gone: report it, keep serving
            families, up = [], 0.0
        with self._lock:
            self._families, self._up = families, up

    def _run(self) -> None:
        while True:
            self.refresh()
            time.sleep(self.interval_s)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="trtpipe-triton-metrics", daemon=True)
            self._thread.start()

    def collect(self):
        self._start()
        with self._lock:
            families, up = list(self._families), self._up
        yield GaugeMetricFamily("trtpipe_triton_metrics_up", f"1 if the last fetch of {self.url} worked", value=up)
        yield from families
        usage = kv_usage(families)
        for name in KV_USAGE_SERIES:
            gauge = GaugeMetricFamily(name, "KV-cache utilisation, a fraction of the engine's KV blocks in use (0..1)",
                                      labels=["model_name"])
            for model, value in sorted(usage.items()):
                gauge.add_metric([model], value)
            yield gauge


def mirror_from_env(environ=os.environ) -> TritonMetricsMirror | None:
    """The mirror for the Triton `trtpipe serve` started ($TRTPIPE_TRITON_METRICS_URL), or None."""
    url = environ.get(ENV)
    return TritonMetricsMirror(url) if url else None
