from __future__ import annotations

from pathlib import Path

import pytest

from trtpipe.engine import Engine, convert_checkpoint
from trtpipe.engine.grammar import GrammarCompiler
from trtpipe.stages.synthetic import write_synthetic_checkpoint

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


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """The synthetic tiny-llama (vocab 1024, its real byte-level BPE tokenizer): hf/ and engine/."""
    d = tmp_path_factory.mktemp("synthetic")
    write_synthetic_checkpoint("tiny-llama", d / "hf")
    convert_checkpoint(d / "hf", d / "engine")
    return d


@pytest.fixture
def synthetic_engine(synthetic_dir) -> Engine:
    return Engine.from_dir(synthetic_dir / "engine", limits(max_seq_len=512))


@pytest.fixture(scope="session")
def grammars(synthetic_dir) -> GrammarCompiler:
    return GrammarCompiler.from_tokenizer_dir(synthetic_dir / "hf", 1024)


@pytest.fixture(scope="session")
def synthetic_tokenizer(synthetic_dir):
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(synthetic_dir / "hf" / "tokenizer.json"))
