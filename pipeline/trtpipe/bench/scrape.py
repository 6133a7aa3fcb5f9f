"""Scraping a Prometheus /metrics page before and after each sweep point.

Only gauges and counters are kept (histograms would add hundreds of bucket lines that the client-side
percentiles already cover), and process/runtime metrics are dropped. Whatever the server exposes is
recorded as is; the report highlights the few that explain latency (queue depth, KV usage, preemptions,
prefix-cache hits) when they exist.
"""

from __future__ import annotations

import math

import httpx

SKIPPED_PREFIXES = ("python_", "process_", "go_", "promhttp_")
KEY_METRIC_HINTS = ("num_requests_waiting", "num_requests_running", "cache_usage", "num_preemptions",
                    "prefix_cache", "queue")


class ScrapeError(Exception):
    pass


async def scrape_metrics(client: httpx.AsyncClient, url: str) -> dict[str, float]:
    try:
        response = await client.get(url, timeout=5.0)
    except httpx.HTTPError as exc:
        raise ScrapeError(f"{type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise ScrapeError(f"HTTP {response.status_code}")
    return parse_prometheus_text(response.text)


def parse_prometheus_text(text: str) -> dict[str, float]:
    """`name{labels} value` lines of gauges, counters and untyped metrics -> {"name{labels}": value}."""
    types: dict[str, str] = {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                types[parts[2]] = parts[3]
            continue
        if not line or line.startswith("#"):
            continue
        if "}" in line:
            head, _, rest = line.rpartition("}")
            series = head + "}"
        else:
            series, _, rest = line.partition(" ")
        fields = rest.split()
        if not fields:
            continue
        name = series.split("{", 1)[0]
        if name.startswith(SKIPPED_PREFIXES) or name.endswith("_created"):
            continue
        if _family_type(name, types) in ("histogram", "summary"):
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        if math.isfinite(value):
            samples[series] = value
    return samples


def key_metrics(samples: dict[str, float]) -> dict[str, float]:
    """The samples worth a line in the report."""
    return {k: v for k, v in samples.items()
            if any(hint in k.split("{", 1)[0] for hint in KEY_METRIC_HINTS)}


def _family_type(name: str, types: dict[str, str]) -> str:
    if name in types:
        return types[name]
    for suffix in ("_bucket", "_sum", "_count", "_total", "_created"):
        if name.endswith(suffix) and name[: -len(suffix)] in types:
            return types[name[: -len(suffix)]]
    return "untyped"
