"""Extra Tritons for the e2e tests that need them (the session Triton of tests/conftest.py serves the rest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai import AsyncOpenAI, OpenAI

from tests.conftest import free_port


@pytest.fixture(scope="session")
def spec_triton(trtpipe_home):
    """A Triton on a repository with tiny-llama-spec (tiny-llama's weights + tiny-llama-draft as its draft)."""
    from trtpipe.build import build
    from trtpipe.config import load_config
    from trtpipe.serve.process.launcher import TritonPorts, TritonServer

    repo: Path = trtpipe_home / "spec_repository"
    build(load_config("tiny-llama-spec"), repo)
    server = TritonServer(repo, TritonPorts(free_port(), free_port(), free_port()),
                          log_path=trtpipe_home / "tritonserver-spec.log", exit_timeout_s=2)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replica_triton(built_repo, trtpipe_home):
    """A second Triton on the session's repository, for replica tests (they may kill it)."""
    from trtpipe.serve.process.launcher import TritonPorts, TritonServer

    server = TritonServer(built_repo, TritonPorts(free_port(), free_port(), free_port()),
                          log_path=trtpipe_home / "tritonserver-replica.log", exit_timeout_s=2)
    server.start()
    yield server
    server.stop()


# The official openai client on the session frontend; no retries, so a test sees every error as it is.
@pytest.fixture(scope="module")
def client(frontend) -> OpenAI:
    return OpenAI(base_url=frontend, api_key="unused", max_retries=0)


@pytest.fixture
def aclient(frontend) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=frontend, api_key="unused", max_retries=0)
