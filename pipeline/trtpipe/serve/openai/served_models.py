"""What the frontend serves: each published model's live version, its tokenizer, limits and manifest.

The repository is the source of truth. A publish or rollback rewrites a model's config.pbtxt; the registry
notices the change on the next request and reloads that model's text side, so the frontend always
tokenizes for the version Triton is serving.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from trtpipe.manifest import Manifest
from trtpipe.repo import layout
from trtpipe.serve.openai.text import ModelText
from trtpipe.spec import ServingSpec


@dataclass(frozen=True)
class ServedModel:
    name: str
    version: int
    spec: ServingSpec
    manifest: Manifest
    text: ModelText
    config_mtime_ns: int

    @property
    def engine_model(self) -> str:
        return self.spec.engine_model


class ModelRegistry:
    def __init__(self, repo: Path, chat_template_override: str | None = None):
        self.repo = Path(repo)
        self.chat_template_override = chat_template_override
        self._models: dict[str, ServedModel] = {}
        self._lock = threading.Lock()
        self._names: list[str] = []
        self._names_key: tuple | None = None

    def _config_path(self, name: str) -> Path:
        return self.repo / layout.engine_model_name(name) / "config.pbtxt"

    def _load(self, name: str) -> ServedModel | None:
        model_dir = self.repo / layout.engine_model_name(name)
        cfg = model_dir / "config.pbtxt"
        version = layout.live_version(model_dir)
        if version is None:
            return None
        vdir = model_dir / str(version)
        return ServedModel(name=name, version=version, spec=ServingSpec.read(vdir / "spec.json"),
                           manifest=Manifest.read(vdir / "manifest.json"),
                           text=ModelText.from_dir(vdir / "tokenizer", self.chat_template_override),
                           config_mtime_ns=cfg.stat().st_mtime_ns)

    def get(self, name: str) -> ServedModel | None:
        cfg = self._config_path(name)
        try:
            mtime = cfg.stat().st_mtime_ns
        except OSError:
            return None
        with self._lock:
            cached = self._models.get(name)
            if cached is None or cached.config_mtime_ns != mtime:
                loaded = self._load(name)
                if loaded is None:
                    return None
                self._models[name] = cached = loaded
            return cached

    def names(self) -> list[str]:
        """Published models, re-read only when a config.pbtxt in the repository changed (parsing them all is
        slow enough to matter when readiness and health checks ask every few seconds)."""
        try:
            key = tuple(sorted((p.name, (p / "config.pbtxt").stat().st_mtime_ns) for p in self.repo.iterdir()
                               if p.name.endswith(layout.ENGINE_SUFFIX) and (p / "config.pbtxt").is_file()))
        except OSError:
            return []
        if key != self._names_key:
            self._names, self._names_key = layout.published_models(self.repo), key
        return list(self._names)

    def all(self) -> list[ServedModel]:
        return [m for m in (self.get(n) for n in self.names()) if m is not None]
