"""`trtpipe build --all`: the nightly rebuild. Every config is built, gated and published on pass.

Unchanged configs are no-ops (every stage cached, the live engine key unchanged). A failure in one config
never stops the others and never touches what is live; the JSON report says what happened to each, and
the exit code is non-zero when anything failed.
"""

from __future__ import annotations

import fnmatch
import json
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from trtpipe.build import ProgressFn, build
from trtpipe.cache import ArtifactCache
from trtpipe.config import config_search_path, load_config
from trtpipe.errors import TrtpipeError
from trtpipe.repo.retention import DEFAULT_KEEP


@dataclass
class ConfigOutcome:
    config: str
    # "unchanged" | "published" | "built" | "failed" | "not live" (identical to a kept version rolled back from)
    status: str
    version: int | None
    seconds: float
    error: str | None = None
    gate: dict | None = None


def all_config_names(pattern: str = "*") -> list[str]:
    """Config names from the first build_configs directory that has any (the project's own)."""
    for d in config_search_path():
        names = sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []
        if names:
            return [n for n in names if fnmatch.fnmatch(n, pattern)]
    return []


def build_all(names: list[str], repo: Path, report_path: Path | None = None, *, publish: bool = True,
              progress: ProgressFn = lambda *a: None, keep: int = DEFAULT_KEEP) -> list[ConfigOutcome]:
    cache = ArtifactCache()
    outcomes = []
    for name in names:
        t0 = time.perf_counter()
        try:
            result = build(load_config(name), repo, cache=cache, publish=publish, gate=True, keep=keep,
                           progress=lambda stage, *rest: progress(f"{name}: {stage}", *rest))
            p = result.published
            status = "built" if p is None else ("published" if not p.unchanged else
                                                ("unchanged" if p.is_live else "not live"))
            outcomes.append(ConfigOutcome(name, status, p.version if p else None,
                                          round(time.perf_counter() - t0, 2), gate=result.manifest.gate))
        except TrtpipeError as e:
            outcomes.append(ConfigOutcome(name, "failed", None, round(time.perf_counter() - t0, 2), e.message))
        except Exception as e:  # noqa: BLE001 - one broken config must not stop the nightly for the others
            outcomes.append(ConfigOutcome(name, "failed", None, round(time.perf_counter() - t0, 2),
                                          f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}"))
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps({"repo": str(repo), "results": [asdict(o) for o in outcomes]},
                                          indent=2) + "\n")
    return outcomes
