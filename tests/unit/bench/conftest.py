import pytest

from .fake_server import FakeServer


@pytest.fixture(scope="session")
def fake_server():
    server = FakeServer().start()
    yield server
    server.stop()


@pytest.fixture
def server_log(fake_server):
    """The fake server's request log, emptied for this test."""
    fake_server.state.bodies.clear()
    fake_server.state.auth_headers.clear()
    return fake_server.state
