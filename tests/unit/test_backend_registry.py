"""backend_registry: one row per backend, read by the backend objects and by config validation alike."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict, fields

import pytest

from trtpipe.backend_registry import BACKEND_MODULES, CAPABILITIES, BackendCapabilities, backend_names, get_backend
from trtpipe.config import load_config
from trtpipe.errors import ConfigError


def test_every_backend_has_a_module_and_one_row_of_capabilities_its_object_reads():
    assert set(CAPABILITIES) == set(BACKEND_MODULES)
    for name in backend_names():
        backend = get_backend(name)
        assert backend.name == name and backend.capabilities is CAPABILITIES[name]
        # Stated once: no backend class sets a capability of its own.
        assert {f.name: getattr(backend, f.name) for f in fields(BackendCapabilities)} == asdict(CAPABILITIES[name])
        assert all(f.name not in vars(type(backend)) for f in fields(BackendCapabilities) if f.name != "name")


def test_validating_a_config_imports_no_backend_module():
    code = ("import sys; from trtpipe.config import load_config; load_config('tiny-llama'); "
            "print(sorted(m for m in sys.modules if m.startswith('trtpipe.backends.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_trtllm_pytorch_refuses_a_float32_model():
    with pytest.raises(ConfigError, match="a float32 model is not a serving configuration for TensorRT-LLM: use "
                                          "bfloat16 or float16"):
        load_config("llama-8b-pytorch", ["dtype=float32"])
