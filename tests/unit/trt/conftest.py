"""Fixtures for the GPU-path tests. These tests check the commands and configs trtpipe would run and
write for TensorRT-LLM; they never run TensorRT-LLM, Triton's tensorrtllm backend or a GPU."""

from __future__ import annotations

import pytest

from trtpipe.config import load_config
from trtpipe.trt.recipes import TrtTools


@pytest.fixture
def tools() -> TrtTools:
    # Explicit paths, so a developer's TRTPIPE_* environment cannot change the pinned argv.
    return TrtTools(python="python3", examples_dir="/app/examples", trtllm_build="trtllm-build",
                    tritonserver="/opt/tritonserver/bin/tritonserver", mpirun="mpirun",
                    models_dir="/app/all_models/inflight_batcher_llm")


@pytest.fixture
def llama_8b():
    return load_config("llama-8b")


@pytest.fixture
def llama_70b():
    return load_config("llama-70b")


@pytest.fixture
def draft_1b():
    return load_config("llama-3.2-1b-draft")
