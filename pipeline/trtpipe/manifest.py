"""The build manifest: what went into a published version, so it can be traced and reproduced.

Sources and file hashes, every stage's key and parameters, tool versions, timings and gate results. It is
written beside the engine in the model repository and served by the frontend (/v1/models,
system_fingerprint). It never holds secrets: the config schema has no field for one.

`files` is the sha256 of every file of the published version (paths relative to `<model>-engine/N/`, the
manifest itself excepted) and `companion_files` the same for the other models of its set (`<name>/N/`):
rollback and `trtpipe verify` check a version against them (repo/verify.py).
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

TOOL_PACKAGES = ("trtpipe", "numpy", "safetensors", "tokenizers", "huggingface_hub", "tritonclient", "nvidia-pytriton")


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for pkg in TOOL_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "absent"
    return versions


@dataclass
class StageRecord:
    stage: str
    key: str
    cached: bool
    seconds: float
    meta: dict[str, Any]


@dataclass
class Manifest:
    model_name: str
    backend: str
    config: dict[str, Any]
    stages: list[StageRecord] = field(default_factory=list)
    tool_versions: dict[str, str] = field(default_factory=tool_versions)
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    version: int | None = None
    gate: dict[str, Any] | None = None
    host: str = field(default_factory=platform.node)
    files: dict[str, str] = field(default_factory=dict)
    companion_files: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def engine_key(self) -> str:
        """The key of the last stage: the servable artifact the version publishes (every backend's chain
        ends with it; a pass-through record carries its input's key)."""
        return self.stages[-1].key

    @property
    def fingerprint(self) -> str:
        """OpenAI's system_fingerprint: identifies the exact engine build that answered."""
        return f"trtpipe-{self.backend}-{self.engine_key[:12]}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str) + "\n"

    def write(self, path: Path) -> None:
        path.write_text(self.to_json())

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        data = json.loads(path.read_text())
        data["stages"] = [StageRecord(**s) for s in data["stages"]]
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
