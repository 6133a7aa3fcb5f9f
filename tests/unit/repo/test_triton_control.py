"""Reloading a model on the recorded Triton: a server that refuses or never answers is a PublishError that says
which, not a raw socket error (tritonclient.http passes those through)."""

import os
import socket

import pytest

from tests.conftest import free_port
from trtpipe.errors import PublishError
from trtpipe.repo import triton_control
from trtpipe.repo.triton_control import record_server, reload_models


def test_a_refused_reload_names_the_server_and_whether_its_process_runs(tmp_path):
    record_server(tmp_path, f"http://127.0.0.1:{free_port()}", os.getpid())  # nothing listens on the port
    with pytest.raises(PublishError) as e:
        reload_models(tmp_path, ["tiny-llama-engine"], 2)
    assert "ConnectionRefusedError" in e.value.what and "is still running" in e.value.what
    assert "log" in e.value.fix


def test_a_server_that_never_answers_the_load_is_reported_after_the_load_timeout(tmp_path, monkeypatch):
    with socket.socket() as hung:  # accepts connections (the backlog), never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(4)
        record_server(tmp_path, f"http://127.0.0.1:{hung.getsockname()[1]}", os.getpid())
        monkeypatch.setattr(triton_control, "LOAD_TIMEOUT_S", 0.5)
        with pytest.raises(PublishError) as e:
            reload_models(tmp_path, ["tiny-llama-engine"])
    assert "TimeoutError" in e.value.what and "did not answer the reload" in e.value.what
