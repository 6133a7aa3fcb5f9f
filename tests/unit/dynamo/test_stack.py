"""The one-host stack's plumbing that needs no running Dynamo: environment, ports, stale registrations."""

from __future__ import annotations

from trtpipe.dynamo.stack import LOOPBACK, DynamoStack, Member, StackOptions, free_system_port


def test_every_address_dynamo_advertises_is_loopback_and_discovery_is_the_stacks_own(tmp_path):
    stack = DynamoStack(StackOptions(repo=tmp_path, models=["m"], work_dir=tmp_path / "w"))
    env = stack.env()
    assert env["DYN_DISCOVERY_BACKEND"] == "file" and env["DYN_FILE_KV"] == str(tmp_path / "w" / "discovery")
    assert (env["DYN_REQUEST_PLANE"], env["DYN_EVENT_PLANE"]) == ("tcp", "zmq")
    for name in ("DYN_TCP_RPC_HOST", "DYN_TCP_RESPONSE_STREAM_HOST", "DYN_EVENT_PLANE_HOST", "DYN_SYSTEM_HOST"):
        assert env[name] == LOOPBACK


def test_system_ports_stay_below_what_dynamo_can_read():
    assert all(20000 <= free_system_port() < 32768 for _ in range(20))


def test_workers_share_the_cores_but_one(tmp_path, monkeypatch):
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("trtpipe.dynamo.stack.usable_cpus", lambda: 9)
    stack = DynamoStack(StackOptions(repo=tmp_path, models=["m"], work_dir=tmp_path))
    stack.workers = [Member(f"w{i}", [], tmp_path / f"w{i}.log") for i in range(4)]
    assert stack._engine_thread_env()["OPENBLAS_NUM_THREADS"] == "2"
    stack.opts.engine_threads = 1
    assert stack._engine_thread_env()["OMP_NUM_THREADS"] == "1"


def test_a_dead_workers_registrations_go_and_no_other(tmp_path):
    stack = DynamoStack(StackOptions(repo=tmp_path, models=["m"], work_dir=tmp_path))
    member = Member("worker-m-0", [], tmp_path / "w.log")
    (tmp_path / "worker-m-0.instance").write_text(str(0x1FFD8867DE34D72A))
    files = {bucket: [stack.discovery / "v1" / bucket / f"ns%2Fc%2Fgenerate%2F{i}" for i in ("1ffd8867de34d72a", "2a")]
             for bucket in ("instances", "mdc")}
    for paths in files.values():
        for p in paths:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("{}")
    assert stack.registered_workers() == 2
    stack._forget(member)
    assert [p.exists() for paths in files.values() for p in paths] == [False, True, False, True]
    assert stack.registered_workers() == 1
