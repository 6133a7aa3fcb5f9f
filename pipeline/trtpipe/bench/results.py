"""The data a run produces: one record per request, a summary per sweep point, and the whole result.

Times are seconds on the client's monotonic clock, relative to the start of the sweep point, so a
record can be re-summarized later from results.json alone. Durations in summaries are milliseconds,
as `vllm bench serve` reports them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from trtpipe.bench.config import SweepPoint


# Chunks stamped within this long of a burst's first chunk arrived together (the client parsing a burst takes
# tens of microseconds per chunk; a server's real inter-token gap is milliseconds).
ARRIVAL_WINDOW_S = 0.001


def arrival_groups(times: list[float]) -> list[list[float]]:
    """Chunk arrival times -> bursts: each burst starts at a chunk and takes the chunks within ARRIVAL_WINDOW_S."""
    groups: list[list[float]] = []
    for t in times:
        if groups and t - groups[-1][0] <= ARRIVAL_WINDOW_S:
            groups[-1].append(t)
        else:
            groups.append([t])
    return groups


@dataclass
class RequestRecord:
    request_id: int
    scheduled_s: float  # when the load generator wanted to send it
    start_s: float  # when it was actually sent; start - scheduled is client queue time, not TTFT
    end_s: float  # when the response finished (or failed)
    # Arrival of each non-empty content chunk (bench/client.py stamps each when its bytes came off the stream).
    chunk_times_s: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    output_tokens: int = 0
    output_tokens_source: str = "usage"  # usage | tokenizer | words | chunks
    status_code: int | None = None
    error: str | None = None

    @property
    def is_success(self) -> bool:
        return self.error is None and bool(self.chunk_times_s)

    @property
    def queue_s(self) -> float:
        return self.start_s - self.scheduled_s

    @property
    def ttft_s(self) -> float | None:
        return self.chunk_times_s[0] - self.start_s if self.chunk_times_s else None

    @property
    def e2e_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def itl_s(self) -> list[float]:
        """Inter-token latencies by arrival: one per chunk after the first arrival.

        Chunks that arrived together (within ARRIVAL_WINDOW_S of the first of them: one burst, read and parsed
        one after another) share the gap since the previous burst, g / k each for k chunks (g between the two
        bursts' last chunks), instead of counting as k - 1 gaps of a few microseconds: the server made them
        g / k apart on average, and they reached the client together (a busy client, TCP coalescing). Extra
        chunks of the first burst have no gap to share and add none. The gaps sum to the time from the end of
        the first burst to the last arrival, exactly.
        """
        groups = arrival_groups(self.chunk_times_s)
        gaps: list[float] = []
        for previous, group in zip(groups, groups[1:]):
            gaps += [(group[-1] - previous[-1]) / len(group)] * len(group)
        return gaps

    @property
    def mean_itl_s(self) -> float | None:
        gaps = self.itl_s
        return sum(gaps) / len(gaps) if gaps else None

    @property
    def tpot_s(self) -> float | None:
        """(E2E - TTFT) / (output tokens - 1): decode time per token after the first."""
        if self.ttft_s is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)

    def to_json(self) -> dict:
        data = asdict(self)
        for key in ("scheduled_s", "start_s", "end_s"):
            data[key] = round(data[key], 6)
        data["chunk_times_s"] = [round(t, 6) for t in self.chunk_times_s]
        return data

    @classmethod
    def from_json(cls, data: dict) -> RequestRecord:
        return cls(**data)


@dataclass(frozen=True)
class Stats:
    """Distribution of one latency metric over a sweep point, in milliseconds."""

    count: int
    mean: float
    median: float
    std: float
    p50: float
    p90: float
    p95: float
    p99: float

    @classmethod
    def from_json(cls, data: dict | None) -> Stats | None:
        return None if data is None else cls(**data)


@dataclass
class PointSummary:
    num_requests: int
    completed: int
    failed: int
    duration_s: float
    total_input_tokens: int
    total_output_tokens: int
    request_throughput: float  # completed req/s
    output_throughput: float  # output tok/s
    total_token_throughput: float  # (input + output) tok/s
    goodput: float | None  # req/s meeting all SLOs; None when no SLO was given
    slo_attainment: float | None  # fraction of all sent requests meeting all SLOs
    meets_slo: bool | None
    ttft: Stats | None
    tpot: Stats | None
    itl: Stats | None
    e2el: Stats | None
    queue: Stats | None
    errors: dict[str, int] = field(default_factory=dict)  # message -> count

    @property
    def error_rate(self) -> float:
        return self.failed / self.num_requests if self.num_requests else 0.0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> PointSummary:
        data = dict(data)
        for key in ("ttft", "tpot", "itl", "e2el", "queue"):
            data[key] = Stats.from_json(data.get(key))
        return cls(**data)


@dataclass
class PointResult:
    point: SweepPoint
    summary: PointSummary
    requests: list[RequestRecord]
    started_at: str  # wall clock, ISO 8601
    server_metrics: dict | None = None  # {"before": {...}, "after": {...}} or {"error": "..."}
    # With --rounds N > 1: each round's own summary (`summary` pools every request of every round).
    rounds: list[PointSummary] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"point": self.point.to_json(), "started_at": self.started_at, "summary": self.summary.to_json(),
                "rounds": [r.to_json() for r in self.rounds], "server_metrics": self.server_metrics,
                "requests": [r.to_json() for r in self.requests]}

    @classmethod
    def from_json(cls, data: dict) -> PointResult:
        return cls(point=SweepPoint.from_json(data["point"]), summary=PointSummary.from_json(data["summary"]),
                   requests=[RequestRecord.from_json(r) for r in data.get("requests", [])],
                   started_at=data.get("started_at", ""), server_metrics=data.get("server_metrics"),
                   rounds=[PointSummary.from_json(r) for r in data.get("rounds", [])])


@dataclass
class BenchResult:
    config: dict  # BenchConfig.to_json(): no secrets
    model: str
    started_at: str
    prompt_lengths: str  # how prompt lengths were sized (tokenizer or word approximation)
    points: list[PointResult]
    trtpipe_version: str = ""

    def to_json(self) -> dict:
        return {"trtpipe_version": self.trtpipe_version, "started_at": self.started_at, "model": self.model,
                "prompt_lengths": self.prompt_lengths, "config": self.config,
                "points": [p.to_json() for p in self.points]}

    @classmethod
    def from_json(cls, data: dict) -> BenchResult:
        return cls(config=data["config"], model=data["model"], started_at=data["started_at"],
                   prompt_lengths=data.get("prompt_lengths", ""),
                   points=[PointResult.from_json(p) for p in data["points"]],
                   trtpipe_version=data.get("trtpipe_version", ""))
