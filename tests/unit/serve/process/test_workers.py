"""The API-server supervisor's checks before it spawns anything (serve.process.workers); the workers themselves run in
tests/e2e/test_api_servers.py."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from trtpipe.errors import TritonStartError
from trtpipe.serve.api.app import FrontendSettings
from trtpipe.serve.process.workers import Supervisor


def test_a_port_in_use_fails_serve_before_any_worker_starts(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        supervisor = Supervisor(FrontendSettings(repo=tmp_path), 2, "127.0.0.1", taken.getsockname()[1], 1.0)
        with pytest.raises(TritonStartError, match="cannot bind the frontend to 127.0.0.1:") as err:
            supervisor.run()
    assert "choose a free --port" in str(err.value.format_message()) and supervisor.workers == []
