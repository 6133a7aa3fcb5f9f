"""Which backends exist: one row per backend, the module that defines it.

This table is the one place a new backend is named. Everything else asks `get_backend(name)` and talks to
the object it returns (backends/base.py), so config, cache, manifest, repository versioning, gates and
serving have no per-backend branches.

NOTE: the modules are loaded by name, on first use. That is deliberate: config validation (the bottom
layer) needs the backend's rules, while each backend module sits at the top and imports stages, trt/,
repo/ and serve/. A name lookup keeps the import graph one-way (tests/unit/test_layers.py checks it);
this is the one run-time plugin lookup in the package, like an entry point.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trtpipe.backends.base import Backend

BACKEND_MODULES = {
    "reference": "trtpipe.backends.reference",
    "trt-engine": "trtpipe.backends.tensorrt_engine",
    "trtllm-pytorch": "trtpipe.backends.tensorrt_llm_pytorch",
}


def backend_names() -> tuple[str, ...]:
    return tuple(BACKEND_MODULES)


def get_backend(name: str) -> "Backend":
    """The backend object for a config's `backend:` value. Raises KeyError for an unknown name (config
    validation refuses those first, naming the choices)."""
    return importlib.import_module(BACKEND_MODULES[name]).BACKEND
