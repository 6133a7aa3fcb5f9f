from __future__ import annotations

from pathlib import Path

import pytest

from trtpipe.engine import Engine

from .tiny import build_engine_dir, limits


@pytest.fixture(scope="session")
def engine_dir(tmp_path_factory) -> Path:
    """The tiny Llama (hidden 64, 2 layers, 4 heads / 2 kv heads, vocab 128), converted once."""
    return build_engine_dir(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def make_engine(engine_dir):
    def make(**kw) -> Engine:
        return Engine.from_dir(engine_dir, limits(**kw))
    return make
