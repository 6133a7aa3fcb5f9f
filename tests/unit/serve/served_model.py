"""A served tiny-llama without a repository or Triton: the real tokenizer and chat template, the reference
backend's serving spec. For the frontend's unit tests."""

from __future__ import annotations

from types import SimpleNamespace

from trtpipe.backend_registry import get_backend
from trtpipe.config import load_config
from trtpipe.serve.openai.served_models import ServedModel
from trtpipe.serve.openai.text import ModelText
from trtpipe.stages.synthetic import write_synthetic_checkpoint


def tiny_served_model(tmp_path_factory, chat_template: str | None = None) -> ServedModel:
    d = tmp_path_factory.mktemp("ckpt")
    write_synthetic_checkpoint("tiny-llama", d)
    spec = get_backend("reference").serving_spec(load_config("tiny-llama"))
    return ServedModel(name="tiny-llama", version=1, spec=spec, manifest=SimpleNamespace(fingerprint="fp-test"),
                       text=ModelText.from_dir(d, chat_template), config_mtime_ns=0)
