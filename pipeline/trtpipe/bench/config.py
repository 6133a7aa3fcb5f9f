"""What one benchmark run measures: the endpoint, the workload and the sweep, checked once up front.

`BenchConfig` is the only input of `run_sweep`; the CLI only parses strings into it. `to_json()` is the
config as written to results.json and never contains the API key or credentials embedded in URLs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from trtpipe.bench.errors import BenchConfigError

DEFAULT_URL = "http://127.0.0.1:9000/v1"
DEFAULT_CONCURRENCIES = (1, 4, 16, 64)
SLO_KEYS = ("ttft", "tpot", "itl", "e2e")

Endpoint = Literal["chat", "completions"]
SweepMode = Literal["concurrency", "rate"]


@dataclass(frozen=True)
class SweepPoint:
    """One load level: a closed-loop concurrency, or an open-loop Poisson request rate (inf = burst)."""

    mode: SweepMode
    value: float

    @property
    def label(self) -> str:
        if self.mode == "concurrency":
            return f"c={int(self.value)}"
        return "rate=inf" if math.isinf(self.value) else f"rate={self.value:g}"

    def to_json(self) -> dict:
        value = "inf" if math.isinf(self.value) else self.value
        return {"mode": self.mode, "value": value, "label": self.label}

    @classmethod
    def from_json(cls, data: dict) -> SweepPoint:
        return cls(mode=data["mode"], value=float(data["value"]))


@dataclass(frozen=True)
class Slo:
    """Per-request service-level objectives in seconds; a request is "good" when it meets all given.

    `itl` bounds the request's mean gap between content chunks and `tpot` its time per output token,
    which differ when a server packs several tokens into one chunk.
    """

    ttft_s: float | None = None
    tpot_s: float | None = None
    itl_s: float | None = None
    e2e_s: float | None = None

    @property
    def is_empty(self) -> bool:
        return all(v is None for v in (self.ttft_s, self.tpot_s, self.itl_s, self.e2e_s))

    def to_json(self) -> dict:
        return {f"{k}_ms": round(v * 1000, 3) for k, v in self._items() if v is not None}

    def describe(self) -> str:
        return ", ".join(f"{k} <= {v * 1000:g} ms" for k, v in self._items() if v is not None)

    def _items(self):
        return (("ttft", self.ttft_s), ("tpot", self.tpot_s), ("itl", self.itl_s), ("e2e", self.e2e_s))


@dataclass
class BenchConfig:
    url: str = DEFAULT_URL
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    endpoint: Endpoint = "chat"
    concurrencies: tuple[int, ...] = ()
    request_rates: tuple[float, ...] = ()
    # NOTE: open-loop only; a request waiting for a slot counts as client queue time, not TTFT.
    max_concurrency: int | None = None
    num_prompts: int = 64
    duration_s: float | None = None
    input_len: int = 128
    output_len: int = 128
    tokenizer_path: str | None = None
    shared_prefix_len: int = 0
    seed: int = 0
    stream: bool = True
    ignore_eos: bool = False
    slo: Slo = field(default_factory=Slo)
    # A sweep point meets the SLOs when at least this fraction of its requests are good.
    slo_attainment: float = 0.95
    metrics_url: str | None = None
    label: str | None = None
    request_timeout_s: float = 600.0
    # Each sweep point is run this many times; `bench compare` judges the median round against a noise band
    # measured from the spread of the rounds (bench/compare.py).
    rounds: int = 1

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        if urlsplit(self.url).scheme not in ("http", "https"):
            raise BenchConfigError(f"`--url` must start with http:// or https://. Given: {self.url}",
                                   fix=f"pass e.g. --url {DEFAULT_URL}")
        if self.concurrencies and self.request_rates:
            raise BenchConfigError("give `--concurrency` (closed loop) or `--request-rate` (open loop), not both",
                                   fix="use --max-concurrency to cap an open-loop run")
        if not self.concurrencies and not self.request_rates:
            self.concurrencies = DEFAULT_CONCURRENCIES
        _check_positive("--concurrency", self.concurrencies)
        _check_positive("--request-rate", self.request_rates)
        for name, value, minimum in (("--num-prompts", self.num_prompts, 1), ("--input-len", self.input_len, 1),
                                     ("--output-len", self.output_len, 1),
                                     ("--shared-prefix-len", self.shared_prefix_len, 0), ("--rounds", self.rounds, 1)):
            if value < minimum:
                raise BenchConfigError(f"`{name}` must be >= {minimum}. Given: {value}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise BenchConfigError(f"`--max-concurrency` must be >= 1. Given: {self.max_concurrency}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise BenchConfigError(f"`--duration` must be > 0 seconds. Given: {self.duration_s}")
        if not 0 < self.slo_attainment <= 1:
            raise BenchConfigError(f"`--slo-attainment` must be in (0, 1]. Given: {self.slo_attainment}")

    def __repr__(self) -> str:
        # Configs end up in logs and tracebacks; show the redacted form, never the key.
        return f"BenchConfig({self.to_json()!r})"

    @property
    def sweep_points(self) -> list[SweepPoint]:
        if self.request_rates:
            return [SweepPoint("rate", r) for r in self.request_rates]
        return [SweepPoint("concurrency", float(c)) for c in self.concurrencies]

    @property
    def endpoint_url(self) -> str:
        return f"{self.url}/chat/completions" if self.endpoint == "chat" else f"{self.url}/completions"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def to_json(self) -> dict:
        """The config for results.json: no API key, no credentials inside URLs."""
        return {
            "url": redact_url(self.url),
            "model": self.model,
            "has_api_key": bool(self.api_key),
            "endpoint": self.endpoint,
            "sweep": [p.to_json() for p in self.sweep_points],
            "max_concurrency": self.max_concurrency,
            "num_prompts": self.num_prompts,
            "duration_s": self.duration_s,
            "input_len": self.input_len,
            "output_len": self.output_len,
            "tokenizer_path": self.tokenizer_path,
            "shared_prefix_len": self.shared_prefix_len,
            "seed": self.seed,
            "stream": self.stream,
            "ignore_eos": self.ignore_eos,
            "slo": self.slo.to_json(),
            "slo_attainment": self.slo_attainment,
            "metrics_url": redact_url(self.metrics_url) if self.metrics_url else None,
            "label": self.label,
            "request_timeout_s": self.request_timeout_s,
            "rounds": self.rounds,
        }


def redact_url(url: str) -> str:
    """Drops `user:password@` from a URL so it can be printed and stored."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def parse_int_list(text: str) -> tuple[int, ...]:
    """`"1,4,16"` -> (1, 4, 16)."""
    try:
        return tuple(int(part) for part in _split(text))
    except ValueError:
        raise ValueError(f"expected comma-separated integers like 1,4,16. Given: {text}") from None


def parse_rate_list(text: str) -> tuple[float, ...]:
    """`"2,8.5,inf"` -> (2.0, 8.5, inf); inf sends every request at once."""
    try:
        return tuple(float(part) for part in _split(text))
    except ValueError:
        raise ValueError(f"expected comma-separated request rates like 2,8,inf. Given: {text}") from None


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(us|ms|s|m)?\s*$")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_duration(text: str) -> float:
    """`"200ms"` -> 0.2 seconds. A bare number is milliseconds, as in `vllm bench serve --goodput`."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"expected a duration like 200ms or 5s. Given: {text}")
    number, unit = match.groups()
    return float(number) * _UNIT_SECONDS[unit or "ms"]


def parse_slo(text: str) -> Slo:
    """`"ttft=200ms,itl=50ms,e2e=5s"` -> Slo; keys are ttft, tpot, itl and e2e (or e2el)."""
    values: dict[str, float] = {}
    for part in _split(text):
        key, sep, value = part.partition("=")
        if not sep:
            key, sep, value = part.partition(":")
        key = "e2e" if key.strip() == "e2el" else key.strip()
        if not sep or key not in SLO_KEYS:
            raise ValueError(f"expected key=duration with key one of {', '.join(SLO_KEYS)}. Given: {part}")
        values[f"{key}_s"] = parse_duration(value)
    return Slo(**values)


def _split(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError("expected at least one value")
    return parts


def _check_positive(option: str, values) -> None:
    for value in values:
        if not value > 0:
            raise BenchConfigError(f"`{option}` values must be > 0. Given: {value}")
