"""The port check before `serve` starts anything (serve.process.ports): one line naming the port, who holds it
and the flag to change; real sockets, the kernel's own tables."""

from __future__ import annotations

import os
import re
import socket

import pytest

from trtpipe.errors import TritonStartError
from trtpipe.serve.process.ports import PortUse, bind_port, check_ports, listening_inodes, port_holder


@pytest.fixture
def listening():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_a_port_in_use_is_named_with_its_holder_and_the_flag_on_one_line(listening):
    frontend, http, metrics = free_ports(3)
    uses = [PortUse("the frontend", "127.0.0.1", frontend, "--port"),
            PortUse("Triton's HTTP port", "127.0.0.1", http, "--http-port"),
            PortUse("Triton's gRPC port", "127.0.0.1", listening, "--grpc-port"),
            PortUse("Triton's metrics port", "127.0.0.1", metrics, "--metrics-port")]
    with pytest.raises(TritonStartError) as err:
        check_ports(uses)
    message = err.value.format_message()
    assert "\n" not in message
    assert re.fullmatch(rf"port {listening} \(Triton's gRPC port, 127\.0\.0\.1\) is already in use by pid {os.getpid()} "
                        r"\(.*python.*\); choose a free one with --grpc-port or stop that process", message), message


def test_a_listener_on_every_address_blocks_the_loopback_too():
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(TritonStartError, match=f"port {port} .* in use by pid {os.getpid()} "):
            check_ports([PortUse("the frontend", "127.0.0.1", port, "--port")])


def test_free_ports_pass_and_are_left_unbound():
    ports = free_ports(4)
    check_ports([PortUse(f"p{i}", "127.0.0.1", p, f"--p{i}") for i, p in enumerate(ports)])
    for p in ports:  # nothing held: each can be bound again at once
        bind_port(PortUse("again", "127.0.0.1", p, "--again")).close()


def test_the_same_port_asked_for_twice_is_refused_before_binding():
    with pytest.raises(TritonStartError) as err:
        check_ports([PortUse("the frontend", "127.0.0.1", 8000, "--port"),
                     PortUse("Triton's HTTP port", "127.0.0.1", 8000, "--http-port")])
    assert err.value.format_message() == ("port 8000 is asked for twice: for the frontend (--port) and for Triton's "
                                          "HTTP port (--http-port); give one of them another port")


def test_a_port_with_no_visible_listener_says_so(listening):
    (port,) = free_ports(1)
    assert listening_inodes(port) == set()
    assert port_holder(port).startswith("another process (no listening socket is visible")
    assert port_holder(listening).startswith(f"pid {os.getpid()} (")
