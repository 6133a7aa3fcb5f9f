"""Publishing and rolling back while Triton and the frontend serve: what clients get changes with it."""

from __future__ import annotations

import pytest
from openai import OpenAI

from tests.conftest import extra_model
from trtpipe.build import build
from trtpipe.config import load_config
from trtpipe.repo.versions import rollback

pytestmark = pytest.mark.integration


@pytest.fixture
def rollback_model(built_repo, triton, tmp_path, monkeypatch):
    """A separate model in the session's repository, removed again afterwards."""
    yield from extra_model("rollback-demo", built_repo, triton, tmp_path, monkeypatch)


def greedy_text(frontend: str, model: str) -> str:
    client = OpenAI(base_url=frontend, api_key="unused", max_retries=0)
    out = client.completions.create(model=model, prompt="Once upon a time", max_tokens=16, temperature=0,
                                    extra_body={"ignore_eos": True})
    return out.choices[0].text


def test_publish_loads_the_new_version_and_rollback_brings_the_old_text_back(built_repo, frontend, rollback_model):
    first = build(load_config(rollback_model), built_repo)
    assert first.published.version == 1
    text_v1 = greedy_text(frontend, rollback_model)

    second = build(load_config(rollback_model, ["quantization.format=int4_wo"]), built_repo)
    assert second.published.version == 2
    text_v2 = greedy_text(frontend, rollback_model)
    assert text_v2 != text_v1

    assert rollback(built_repo, rollback_model) == 1
    assert greedy_text(frontend, rollback_model) == text_v1
