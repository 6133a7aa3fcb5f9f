"""backend trtllm-pytorch on a real Triton: the published Python model (model_repo/llm_api_engine) loaded by
Triton's Python backend, real tritonclient streams, and the OpenAI frontend with the official client.

TensorRT-LLM does not run here: `tensorrt_llm` inside that Triton is the recorded stand-in
(tests/unit/backends/fake_tensorrt_llm.py, copied in as a package into the published version directory, which
the Python-backend stub puts on sys.path; it ignores PYTHONPATH), which streams scripted token ids and
writes every call it gets to a file. So these tests check trtpipe's side for real (repository, config.pbtxt,
decoupled streaming, cancellation reaching abort(), the frontend unchanged) and TensorRT-LLM's side only as
recorded calls.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import free_port
from tests.integration.triton_requests import StreamSession, inputs
from tests.unit.backends import fake_tensorrt_llm as fake

FAKE = Path(fake.__file__)


@pytest.fixture(scope="module")
def llm_api_triton(tmp_path_factory):
    from trtpipe.build import build
    from trtpipe.config import load_config
    from trtpipe.serve.process.launcher import TritonPorts, TritonServer
    from trtpipe.trt import preflight
    from trtpipe.trt.preflight import GpuInfo, Machine

    root = tmp_path_factory.mktemp("llm-api")
    (root / "fake" / "tensorrt_llm").mkdir(parents=True)
    shutil.copy2(FAKE, root / "fake" / "tensorrt_llm" / "__init__.py")
    shutil.copy2(FAKE.with_name("fake_llm_args.py"), root / "fake" / "tensorrt_llm" / "fake_llm_args.py")
    (root / "configs").mkdir()
    (root / "configs" / "tiny-pytorch.yaml").write_text("extends: tiny-llama\nname: tiny-pytorch\n"
                                                        "backend: trtllm-pytorch\n")
    record = root / "calls.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRTPIPE_HOME", str(root / "home"))
        mp.setenv("TRTPIPE_CONFIG_PATH", str(root / "configs"))
        mp.syspath_prepend(str(root / "fake"))  # preflight finds an importable tensorrt_llm
        mp.setattr(preflight, "detect_machine", lambda *a, **k: Machine(
            gpus=[GpuInfo(0, "NVIDIA H100 80GB HBM3", 81559, (9, 0))], tensorrt_llm="1.1.0", nvidia_smi=True))
        repo = root / "repo"
        version = build(load_config("tiny-pytorch"), repo).published.path
        shutil.copytree(root / "fake" / "tensorrt_llm", version / "tensorrt_llm")
        # Triton gets an allowlisted environment: the stand-in's record file is passed to it explicitly.
        server = TritonServer(repo, TritonPorts(free_port(), free_port(), free_port()),
                              log_path=root / "tritonserver.log", exit_timeout_s=2,
                              extra_env={"FAKE_TRTLLM_RECORD": str(record)})
        server.start()
        try:
            yield server, repo, record
        finally:
            server.stop()


def _calls(record: Path, event: str) -> list[dict]:
    if not record.is_file():
        return []
    return [c for c in map(json.loads, record.read_text().splitlines()) if c["event"] == event]


def test_triton_loads_the_llm_api_model_with_the_published_arguments(llm_api_triton):
    server, repo, record = llm_api_triton
    [init] = _calls(record, "init")
    assert init["kwargs"]["model"].endswith("/tiny-pytorch-engine/1/engine/checkpoint")
    assert init["kwargs"]["max_batch_size"] == 64
    # Guided decoding (on by default) compiles grammars against the checkpoint's tokenizer: TensorRT-LLM loads it.
    assert init["kwargs"]["guided_decoding_backend"] == "xgrammar" and init["kwargs"]["skip_tokenizer_init"] is False


def test_a_stream_carries_new_token_ids_then_the_final_flag(llm_api_triton):
    server, _, record = llm_api_triton
    session = StreamSession(server.grpc_url)
    try:
        session.send("tiny-pytorch-engine", inputs([11, 12, 13], 3, end_id=np.array([[2]], dtype=np.int32)))
        got = session.collect(timeout=30)
    finally:
        session.close()
    assert [(ids, final) for ids, final, _ in got] == [([100], False), ([101], False), ([102], True)]
    call = [c for c in _calls(record, "generate_async") if c["prompt"] == [11, 12, 13]][-1]
    assert call["sampling"]["max_tokens"] == 3 and call["sampling"]["end_id"] == 2 and call["streaming"] is True


def test_a_client_that_goes_away_aborts_its_request_in_tensorrt_llm(llm_api_triton):
    server, _, record = llm_api_triton
    session = StreamSession(server.grpc_url)
    session.send("tiny-pytorch-engine", inputs([fake.HOLD, 1], 8))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(c["prompt"][0] == fake.HOLD for c in _calls(record, "generate_async")):
        time.sleep(0.05)
    session.close(cancel=True)
    while time.monotonic() < deadline and not _calls(record, "abort"):
        time.sleep(0.05)
    assert [c["prompt"] for c in _calls(record, "abort")] == [[fake.HOLD, 1]]


@contextlib.contextmanager
def _openai_client(server, repo):
    """trtpipe's frontend in a thread on a free port, and the official client pointed at it."""
    import threading

    import uvicorn
    from openai import OpenAI

    from trtpipe.serve.api.app import FrontendSettings, create_app
    from trtpipe.serve.process.launcher import wait_http_ok

    port = free_port()
    app = create_app(FrontendSettings(repo=repo, triton_grpc_url=server.grpc_url, max_running=8, max_waiting=8))
    web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    try:
        assert wait_http_ok(f"http://127.0.0.1:{port}/health/ready", 30, interval_s=0.1) == "ready"
        yield OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    finally:
        web.should_exit = True
        thread.join(10)


def test_the_openai_frontend_serves_it_unchanged(llm_api_triton):
    server, repo, _ = llm_api_triton
    with _openai_client(server, repo) as client:
        assert [m.id for m in client.models.list().data] == ["tiny-pytorch"]
        kw = dict(model="tiny-pytorch", prompt="Hello", max_tokens=6, temperature=0)
        full = client.completions.create(**kw)
        chunks = list(client.completions.create(stream=True, **kw))
        assert "".join(c.choices[0].text for c in chunks if c.choices) == full.choices[0].text
        assert full.usage.completion_tokens == 6
        assert full.system_fingerprint.startswith("trtpipe-trtllm-pytorch-")


def test_response_format_reaches_tensorrt_llm_as_guided_decoding_params(llm_api_triton):
    # The stand-in enforces nothing (its tokens are scripted), so only the recorded call is checked: the schema the
    # frontend compiled arrives as SamplingParams(guided_decoding=GuidedDecodingParams(json=...)).
    server, repo, record = llm_api_triton
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    with _openai_client(server, repo) as client:
        client.chat.completions.create(
            model="tiny-pytorch", messages=[{"role": "user", "content": "a number"}], max_tokens=4,
            response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema, "strict": True}})
        client.completions.create(model="tiny-pytorch", prompt="pick", max_tokens=3,
                                  extra_body={"guided_regex": "[0-9]+"})
    guided = [c["sampling"]["guided_decoding"]["GuidedDecodingParams"] for c in _calls(record, "generate_async")
              if "guided_decoding" in c["sampling"]]
    assert [g["regex"] for g in guided[-1:]] == ["[0-9]+"]
    assert json.loads(guided[-2]["json"]) == schema
    assert [k for k, v in guided[-2].items() if v] == ["json"]  # one guide, in its own field


def test_top_logprobs_come_back_through_triton_and_the_frontend_from_the_llm_apis_dicts(llm_api_triton):
    # The stand-in answers in TensorRT-LLM 1.2.x's shape ({token_id: Logprob} per token, least likely first);
    # the sampled tokens are 100, 101, ... at -0.5, each the most likely, then 200+20*j+step at -0.5-j.
    server, repo, record = llm_api_triton
    with _openai_client(server, repo) as client:
        resp = client.chat.completions.create(model="tiny-pytorch", messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=2, temperature=0, logprobs=True, top_logprobs=3)
    tokens = resp.choices[0].logprobs.content
    assert [t.logprob for t in tokens] == [-0.5, -0.5]
    assert [[a.logprob for a in t.top_logprobs] for t in tokens] == [[-0.5, -1.5, -2.5]] * 2
    assert [a.token for a in tokens[0].top_logprobs][0] == tokens[0].token  # the sampled token is the most likely
    call = [c for c in _calls(record, "generate_async") if c["sampling"].get("logprobs")][-1]
    assert call["sampling"]["logprobs"] == 3 and "prompt_logprobs" not in call["sampling"]
