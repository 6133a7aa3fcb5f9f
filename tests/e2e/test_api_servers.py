"""`trtpipe serve --api-servers 2` against the session Triton, through the official openai client: the
admission bound is global, /metrics from either worker is the whole server's, cancellation still frees the
engine, a killed worker is replaced while the other keeps serving, and SIGTERM drains streams on both."""

from __future__ import annotations

import os
import signal
import threading
import time

import openai
import pytest
from openai import OpenAI

from tests.conftest import extra_model
from tests.e2e.api_servers import serve_api_servers, stream_port
from tests.e2e.helpers import wait_engine_idle

pytestmark = pytest.mark.e2e
MODEL = "tiny-llama"
COUNTERS = ('trtpipe_request_success_total{finished_reason="length",model="tiny-llama"}',
            'trtpipe_request_success_total{finished_reason="abort",model="tiny-llama"}',
            'trtpipe_generation_tokens_total{model="tiny-llama"}',
            'trtpipe_prompt_tokens_total{model="tiny-llama"}',
            'trtpipe_e2e_request_latency_seconds_count{model="tiny-llama"}',
            'vllm:request_success_total{finished_reason="length",model_name="tiny-llama"}',
            'trtpipe_request_errors_total{model="",status="429",type="rate_limit_error"}')
GAUGES = ('trtpipe_num_requests_running{model="tiny-llama"}', 'trtpipe_num_requests_waiting{model="tiny-llama"}')


@pytest.fixture(scope="module")
def two_servers(triton, built_repo, trtpipe_home):
    """Two API servers sharing max-running 2 and max-waiting 2."""
    with serve_api_servers(triton, built_repo, trtpipe_home, "--max-running", "2", "--max-waiting", "2",
                           "--keepalive", "0.5") as sp:
        yield sp


def scrape(client) -> dict[str, float]:
    out = {}
    for line in client.get("/metrics").text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def whole_server_metrics(sp) -> dict[str, float]:
    """/metrics from every worker; they must agree on every counter and gauge we check."""
    views = [scrape(c) for c in sp.client_per_worker().values()]
    assert len(views) == 2
    for key in COUNTERS + GAUGES:
        assert len({v.get(key, 0.0) for v in views}) == 1, (key, [v.get(key) for v in views])
    return views[0]


def wait_idle_gauges(sp, timeout_s: float = 15.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    while True:
        m = whole_server_metrics(sp)
        if all(m.get(g, 0.0) == 0.0 for g in GAUGES) or time.monotonic() > deadline:
            return m
        time.sleep(0.1)


def openai_client(sp, http) -> OpenAI:
    return OpenAI(base_url=sp.url, api_key="x", max_retries=0, http_client=http)


def test_the_bound_is_global_exactly_max_running_plus_max_waiting_accepted_the_rest_429(two_servers):
    before = wait_idle_gauges(two_servers)
    pinned = two_servers.pinned_clients(10)  # 20 connections, 10 on each worker
    jobs = [(pid, http) for pid, clients in pinned.items() for http in clients]
    barrier, results = threading.Barrier(len(jobs)), {}

    def one(key: int, http) -> None:
        client = openai_client(two_servers, http)
        barrier.wait()
        try:
            stream = client.completions.create(model=MODEL, prompt=f"global bound {key}", max_tokens=300,
                                               temperature=0, stream=True, extra_body={"ignore_eos": True})
        except openai.RateLimitError as e:
            results[key] = ("429", two_servers.owner(stream_port(e.response)), e.response.headers["retry-after"],
                            e.body["code"])
            return
        owner = two_servers.owner(stream_port(stream.response))
        chunks = list(stream)
        results[key] = ("ok", owner, chunks[-1].choices[0].finish_reason, sum(len(c.choices[0].text) > 0
                                                                              for c in chunks))

    threads = [threading.Thread(target=one, args=(i, http)) for i, (_, http) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for clients in pinned.values():
        for c in clients:
            c.close()
    assert len(results) == 20
    # Every worker got requests, so per-worker bounds would have accepted up to 8.
    assert {r[1] for r in results.values()} == set(pinned), results
    accepted = [r for r in results.values() if r[0] == "ok"]
    refused = [r for r in results.values() if r[0] == "429"]
    assert len(accepted) == 2 + 2 and len(refused) == 16, results
    assert all(r[2] == "length" for r in accepted)
    assert all(r[2] == "1" and r[3] == "rate_limit_exceeded" for r in refused)
    after = wait_idle_gauges(two_servers)
    key = COUNTERS[0]
    assert after[key] - before.get(key, 0.0) == 4
    assert after[COUNTERS[-1]] - before.get(COUNTERS[-1], 0.0) == 16


def test_metrics_from_either_worker_are_the_whole_servers_counts(two_servers):
    before = wait_idle_gauges(two_servers)
    prompt_tokens = 0
    for http in two_servers.client_per_worker().values():  # 3 requests through each worker
        client = openai_client(two_servers, http)
        for i in range(3):
            usage = client.completions.create(model=MODEL, prompt=f"count me {i}", max_tokens=5, temperature=0,
                                              extra_body={"ignore_eos": True}).usage
            assert usage.completion_tokens == 5
            prompt_tokens += usage.prompt_tokens
    after = wait_idle_gauges(two_servers)
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in COUNTERS}
    assert delta[COUNTERS[0]] == 6 and delta[COUNTERS[5]] == 6  # trtpipe and vLLM names
    assert delta['trtpipe_generation_tokens_total{model="tiny-llama"}'] == 30
    assert delta['trtpipe_prompt_tokens_total{model="tiny-llama"}'] == prompt_tokens
    assert delta['trtpipe_e2e_request_latency_seconds_count{model="tiny-llama"}'] == 6
    assert all(after[g] == 0.0 for g in GAUGES)


def test_cancelled_streams_on_both_workers_return_the_engine_to_idle(two_servers, triton):
    before = wait_idle_gauges(two_servers)
    streams = []
    pinned = two_servers.pinned_clients(1)  # not the probe clients that whole_server_metrics re-checks
    for pid, (http,) in pinned.items():
        stream = openai_client(two_servers, http).completions.create(
            model=MODEL, prompt="cancel me", max_tokens=400, temperature=0, stream=True,
            extra_body={"ignore_eos": True})
        assert two_servers.owner(stream_port(stream.response)) == pid
        streams.append(stream)
    for stream in streams:
        for _, chunk in zip(range(3), stream):
            assert chunk.choices[0].finish_reason is None
    running = whole_server_metrics(two_servers)
    assert running[GAUGES[0]] == 2.0  # one per worker, counted once for the whole server
    for stream in streams:
        stream.close()
    assert wait_engine_idle(triton.ports.metrics)["num_active_requests"] == 0
    after = wait_idle_gauges(two_servers)
    assert all(after[g] == 0.0 for g in GAUGES)
    assert after[COUNTERS[1]] - before.get(COUNTERS[1], 0.0) == 2  # the two aborts
    for (http,) in pinned.values():
        http.close()


@pytest.fixture
def reload_model(built_repo, triton, tmp_path, monkeypatch):
    """A separate model in the session's repository, removed again afterwards."""
    yield from extra_model("api-servers-reload", built_repo, triton, tmp_path, monkeypatch)


def test_publish_and_rollback_reach_every_worker(two_servers, built_repo, reload_model):
    from trtpipe.build import build
    from trtpipe.config import load_config
    from trtpipe.repo.versions import rollback

    def served() -> list[tuple[int, str]]:
        """(version, greedy text) as each worker serves the model."""
        out = []
        for http in two_servers.client_per_worker().values():
            card = http.get(f"/v1/models/{reload_model}").json()
            text = openai_client(two_servers, http).completions.create(
                model=reload_model, prompt="Once upon a time", max_tokens=16, temperature=0,
                extra_body={"ignore_eos": True}).choices[0].text
            out.append((card["trtpipe"]["version"], text))
        return out

    assert build(load_config(reload_model), built_repo).published.version == 1
    v1 = served()
    assert [v for v, _ in v1] == [1, 1] and v1[0][1] == v1[1][1]
    assert build(load_config(reload_model, ["quantization.format=int4_wo"]), built_repo).published.version == 2
    v2 = served()
    assert [v for v, _ in v2] == [2, 2] and v2[0][1] == v2[1][1] != v1[0][1]
    assert rollback(built_repo, reload_model) == 1
    assert served() == v1


def test_a_killed_worker_is_replaced_while_the_other_keeps_serving(two_servers, triton):
    # Connections made before the kill: a new one made while the victim dies may land in its accept queue and
    # be reset (the SO_REUSEPORT trade-off, serve/process/workers.py).
    pinned = two_servers.pinned_clients(2)
    victim, survivor = sorted(pinned)
    outcome = {}

    def stream_on(pid: int) -> None:
        stream = openai_client(two_servers, pinned[pid][0]).completions.create(
            model=MODEL, prompt=f"keep serving {pid}", max_tokens=300, temperature=0, stream=True,
            extra_body={"ignore_eos": True})
        try:
            chunks = list(stream)
            outcome[pid] = chunks[-1].choices[0].finish_reason
        except Exception as e:  # noqa: BLE001 - the killed worker's connection breaks mid-stream
            outcome[pid] = e

    threads = [threading.Thread(target=stream_on, args=(pid,)) for pid in (victim, survivor)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    two_servers_pids = two_servers.worker_pids()
    os.kill(victim, signal.SIGKILL)
    # The survivor keeps serving new requests while the victim is down.
    usage = openai_client(two_servers, pinned[survivor][1]).completions.create(
        model=MODEL, prompt="still here", max_tokens=4, temperature=0, extra_body={"ignore_eos": True}).usage
    assert usage.completion_tokens == 4
    for t in threads:
        t.join(120)
    assert outcome[survivor] == "length"
    assert isinstance(outcome[victim], Exception), outcome
    deadline = time.monotonic() + 60
    while len(two_servers.worker_pids()) != 2 or victim in two_servers.worker_pids():
        assert time.monotonic() < deadline, two_servers.log()
        time.sleep(0.2)
    replacement = (two_servers.worker_pids() - two_servers_pids).pop()
    assert f"(pid {victim}) exited with code -9; restarting it" in two_servers.log()
    two_servers.wait_all_ready()
    # The victim's admitted request no longer counts: the gauges are back to 0 and the replacement serves.
    assert all(wait_idle_gauges(two_servers)[g] == 0.0 for g in GAUGES)
    http = two_servers.client_per_worker()[replacement]
    usage = openai_client(two_servers, http).completions.create(model=MODEL, prompt="new worker", max_tokens=4,
                                                                temperature=0, extra_body={"ignore_eos": True}).usage
    assert usage.completion_tokens == 4
    assert wait_engine_idle(triton.ports.metrics)["num_active_requests"] == 0
    for clients in pinned.values():
        for c in clients:
            c.close()


DRAIN_S = 4.0  # as in test_drain.py: a 30-token stream finishes within it, 4 x 500 tokens does not


def test_sigterm_drains_streams_on_both_workers_and_exits_0(triton, built_repo, trtpipe_home):
    with serve_api_servers(triton, built_repo, trtpipe_home, "--drain-timeout", str(DRAIN_S), "--keepalive", "0.5",
                           log_name="serve-api-servers-drain.log") as sp:
        pinned = sp.pinned_clients(10)
        jobs = [(http, i % 2 == 0) for clients in pinned.values() for i, http in enumerate(clients)]  # 5 long each
        started, out = [threading.Event() for _ in jobs], {}

        def one(key: int, http, long: bool) -> None:
            stream = openai_client(sp, http).completions.create(
                model=MODEL, prompt=f"drain {key}", max_tokens=500 if long else 30, n=4 if long else 1,
                temperature=0, stream=True, extra_body={"ignore_eos": True})
            owner, chunks = sp.owner(stream_port(stream.response)), []
            try:
                for chunk in stream:
                    chunks.append(chunk)
                    started[key].set()
                out[key] = (owner, long, chunks, None, time.monotonic())
            except openai.APIError as e:
                out[key] = (owner, long, chunks, e, time.monotonic())
            started[key].set()

        threads = [threading.Thread(target=one, args=(i, http, long)) for i, (http, long) in enumerate(jobs)]
        for t in threads:
            t.start()
        assert all(e.wait(60) for e in started)
        t_term = time.monotonic()
        sp.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        for client in sp.client_per_worker().values():  # every worker drains
            ready = client.get("/health/ready")
            assert ready.status_code == 503 and ready.json()["draining"] is True
            refused = client.post("/v1/completions", json={"model": MODEL, "prompt": "late"})
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "server_shutting_down"
        for t in threads:
            t.join(30)
        code = sp.process.wait(60)
    assert code == 0, sp.log()
    assert sp.log().count("draining (up to") == 2
    assert len(out) == 20 and {o[0] for o in out.values()} == set(pinned)
    cut = 0
    for key, (owner, long, chunks, error, t_end) in out.items():
        if error is None:  # finished: before SIGTERM or within the budget
            assert chunks[-1].choices[0].finish_reason == "length" and t_end < t_term + DRAIN_S + 2
        else:  # still running when the budget ran out
            assert long and error.body["code"] == "server_shutting_down", (key, error)
            cut += 1
    assert cut >= 1
    assert all(out[k][3] is None for k in out if not out[k][1])  # every short stream finished
    assert wait_engine_idle(triton.ports.metrics)["num_active_requests"] == 0
