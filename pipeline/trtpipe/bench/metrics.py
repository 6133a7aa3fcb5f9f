"""Per-request timings -> one sweep point's summary, with the metrics named as `vllm bench serve` names them.

- TTFT: send -> first non-empty content chunk. It includes server-side queueing, but not the client's
  own queueing (open loop: scheduled -> sent), which is reported apart as `queue`.
- TPOT per request: (E2E - TTFT) / (output tokens - 1).
- ITL: every gap between consecutive content chunks, pooled across requests.
- E2EL: send -> end of response.
- Throughputs divide by the point's wall-clock duration; only completed requests count.
- Goodput: completed requests meeting every given SLO, per second.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

from trtpipe.bench.config import Slo
from trtpipe.bench.results import PointSummary, RequestRecord, Stats

PERCENTILES = (50, 90, 95, 99)


def stats_ms(values_s: Iterable[float]) -> Stats | None:
    """Mean, median, std and percentiles (numpy's linear interpolation) in ms; None for no values."""
    values = np.asarray(list(values_s), dtype=np.float64) * 1000.0
    if values.size == 0:
        return None
    p50, p90, p95, p99 = (float(v) for v in np.percentile(values, PERCENTILES))
    return Stats(count=int(values.size), mean=float(values.mean()), median=float(np.median(values)),
                 std=float(values.std()), p50=p50, p90=p90, p95=p95, p99=p99)


def meets_slo(record: RequestRecord, slo: Slo) -> bool:
    """A completed request is good when it is within every given SLO.

    TPOT and ITL are undefined for one-token answers; like vLLM we let those pass.
    """
    if not record.is_success:
        return False
    checks = ((slo.ttft_s, record.ttft_s), (slo.tpot_s, record.tpot_s), (slo.itl_s, record.mean_itl_s),
              (slo.e2e_s, record.e2e_s))
    return all(limit is None or value is None or value <= limit for limit, value in checks)


def summarize(records: list[RequestRecord], duration_s: float, slo: Slo | None = None,
              slo_attainment: float = 0.95) -> PointSummary:
    slo = slo or Slo()
    completed = [r for r in records if r.is_success]
    failed = [r for r in records if not r.is_success]
    total_input = sum(r.prompt_tokens for r in completed)
    total_output = sum(r.output_tokens for r in completed)
    per_second = (lambda x: x / duration_s) if duration_s > 0 else (lambda x: 0.0)

    goodput = attainment = is_meeting = None
    if not slo.is_empty:
        num_good = sum(meets_slo(r, slo) for r in completed)
        goodput = per_second(num_good)
        attainment = num_good / len(records) if records else 0.0
        is_meeting = attainment >= slo_attainment

    return PointSummary(
        num_requests=len(records),
        completed=len(completed),
        failed=len(failed),
        duration_s=duration_s,
        total_input_tokens=total_input,
        total_output_tokens=total_output,
        request_throughput=per_second(len(completed)),
        output_throughput=per_second(total_output),
        total_token_throughput=per_second(total_input + total_output),
        goodput=goodput,
        slo_attainment=attainment,
        meets_slo=is_meeting,
        ttft=stats_ms(r.ttft_s for r in completed),
        tpot=stats_ms(r.tpot_s for r in completed if r.tpot_s is not None),
        itl=stats_ms(gap for r in completed for gap in r.itl_s),
        e2el=stats_ms(r.e2e_s for r in completed),
        queue=stats_ms(r.queue_s for r in records),
        errors=dict(Counter(r.error or "no content in response" for r in failed).most_common(10)),
    )
