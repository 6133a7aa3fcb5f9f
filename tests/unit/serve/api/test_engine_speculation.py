"""A model whose engine speculates itself (trtllm-pytorch's speculative_config) gets no second, frontend-run
draft-target loop: its spec says engine_speculation and names no draft, and Frontend.draft_for says None even
when the operator maps a draft to it (--draft)."""

from __future__ import annotations

from types import SimpleNamespace

from trtpipe.backend_registry import get_backend
from trtpipe.config import load_config
from trtpipe.serve.api.frontend import Frontend


def _frontend(drafts: dict[str, str]) -> Frontend:
    frontend = Frontend.__new__(Frontend)  # only what draft_for reads; no registry on disk, no Triton
    frontend._drafts = drafts
    frontend.registry = SimpleNamespace(get=lambda name: SimpleNamespace(name=name))
    frontend.settings = SimpleNamespace(default_max_draft_len=4)
    return frontend


def test_an_engine_that_speculates_gets_no_frontend_draft_even_with_an_operator_mapping():
    spec = get_backend("trtllm-pytorch").serving_spec(load_config("llama-8b-pytorch"))
    assert _frontend({"llama-8b-pytorch": "some-draft"}).draft_for(
        SimpleNamespace(name="llama-8b-pytorch", spec=spec)) is None


def test_an_engine_path_target_still_gets_its_published_draft():
    spec = get_backend("trt-engine").serving_spec(load_config("llama-8b"))
    draft, k = _frontend({}).draft_for(SimpleNamespace(name="llama-8b", spec=spec))
    assert draft.name == "llama-3.2-1b-draft" and k == 4
