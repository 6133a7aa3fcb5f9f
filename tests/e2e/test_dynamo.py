"""trtpipe on NVIDIA Dynamo, for real on loopback: Dynamo's own frontend (KV router) in front of two trtpipe workers,
called with the official openai client. One stack for the module (started once, ~seconds).

Dynamo reports which worker served a response when asked: `nvext.extra_fields=["worker_id"]` in the request
puts `nvext.worker_id.decode_worker_id` in the response. Each worker's engine state comes from its Dynamo
system server (POST /engine/control/stats, served by Dynamo's runtime, answered by our worker).
"""

from __future__ import annotations

import json
import threading
import time

import pytest

pytest.importorskip("dynamo.llm", reason="the `dynamo` extra is not installed (make dynamo)")

from openai import OpenAI  # noqa: E402

from trtpipe.dynamo.stack import DynamoStack, StackOptions, free_system_port  # noqa: E402

pytestmark = pytest.mark.e2e
WORKER = {"nvext": {"extra_fields": ["worker_id"]}}
MESSAGES = [{"role": "user", "content": "Tell me about the sea and the ships on it."}]


@pytest.fixture(scope="module")
def dynamo_repo(trtpipe_home):
    """tiny-llama published in a repository of its own: the publish/rollback test changes it."""
    from trtpipe.build import build
    from trtpipe.config import load_config

    repo = trtpipe_home / "dynamo_repository"
    build(load_config("tiny-llama"), repo)
    return repo


@pytest.fixture(scope="module")
def stack(dynamo_repo, trtpipe_home):
    opts = StackOptions(repo=dynamo_repo, models=["tiny-llama"], port=free_system_port(), workers=2,
                        work_dir=trtpipe_home / "dynamo-stack", drain_timeout_s=5, start_timeout_s=90)
    with DynamoStack(opts) as s:
        yield s


@pytest.fixture(scope="module")
def dclient(stack) -> OpenAI:
    return OpenAI(base_url=stack.url, api_key="unused", max_retries=0)


def served_by(response) -> int:
    return response.model_extra["nvext"]["worker_id"]["decode_worker_id"]


def stats(stack) -> list[dict]:
    return [stack.worker_stats(w) for w in stack.workers]


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def greedy_chat(c: OpenAI, **kw) -> tuple[str, object]:
    r = c.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=24, temperature=0, **kw)
    return r.choices[0].message.content, r


def test_greedy_text_through_dynamo_equals_trtpipes_own_frontend(dclient, client):
    ours, r_ours = greedy_chat(client)
    theirs, r_theirs = greedy_chat(dclient)
    assert theirs == ours and theirs
    assert (r_theirs.usage.prompt_tokens, r_theirs.usage.completion_tokens) == \
        (r_ours.usage.prompt_tokens, r_ours.usage.completion_tokens)
    assert r_theirs.choices[0].finish_reason == r_ours.choices[0].finish_reason

    prompt = "Once upon a time, in a harbour town,"
    done = [c.completions.create(model="tiny-llama", prompt=prompt, max_tokens=20, temperature=0).choices[0].text
            for c in (client, dclient)]
    assert done[0] == done[1]
    streamed = "".join(ch.choices[0].text for ch in dclient.completions.create(
        model="tiny-llama", prompt=prompt, max_tokens=20, temperature=0, stream=True) if ch.choices)
    assert streamed == done[0]


def test_log_probs_and_guided_json_pass_through_dynamo(dclient, client):
    kw = dict(logprobs=True, top_logprobs=3)
    _, ours = greedy_chat(client, **kw)
    _, theirs = greedy_chat(dclient, **kw)
    a, b = ours.choices[0].logprobs.content, theirs.choices[0].logprobs.content
    assert len(a) == len(b) == 24
    # A token that is part of a UTF-8 character: trtpipe writes its bytes as "\\xNN" (as vLLM), Dynamo as U+FFFD.
    whole = [i for i, t in enumerate(a) if "\\x" not in t.token]
    assert [a[i].token for i in whole] == [b[i].token for i in whole]
    assert [t.logprob for t in b] == pytest.approx([t.logprob for t in a], abs=1e-4)
    assert all(len(t.top_logprobs) == 3 for t in b)

    r = dclient.chat.completions.create(
        model="tiny-llama", messages=MESSAGES, max_tokens=60, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": {
            "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}})
    # The grammar ends the generation itself (a random model would never close the object on its own).
    assert isinstance(json.loads(r.choices[0].message.content)["ok"], bool)
    assert r.choices[0].finish_reason == "stop"


def test_repeated_prefixes_go_to_one_worker_and_its_prefix_hits_grow(stack, dclient):
    prefix = "You are a helpful assistant for a shipping company. " * 12  # ~10 blocks of 32 tokens
    before = stats(stack)
    workers, cached = [], []
    for i in range(5):
        r = dclient.completions.create(model="tiny-llama", prompt=f"{prefix} Question {i}: where?", max_tokens=2,
                                       temperature=0, extra_body=WORKER)
        workers.append(served_by(r))
        cached.append(r.usage.prompt_tokens_details.cached_tokens)
    assert len(set(workers)) == 1, workers
    assert cached[0] == 0 and min(cached[1:]) >= 5 * 32, cached
    after = stats(stack)
    grew = [a["prefix_cache_hits"] - b["prefix_cache_hits"] for a, b in zip(after, before)]
    assert sorted(grew)[-1] >= sum(cached) and sorted(grew)[0] == 0, grew


def test_a_disconnect_cancels_in_the_worker_and_the_engine_goes_idle(stack, dclient):
    aborted = sum(s["num_aborted_total"] for s in stats(stack))
    stream = dclient.completions.create(model="tiny-llama", prompt="Write a very long story.", max_tokens=500,
                                        temperature=0, stream=True, extra_body={"ignore_eos": True})
    for _, _chunk in zip(range(3), stream):
        pass
    stream.close()
    wait_for(lambda: sum(s["num_aborted_total"] for s in stats(stack)) == aborted + 1, 10, "the worker aborts")
    idle = wait_for(lambda: all(s["num_active_requests"] == 0 and s["kv_blocks_used"] == 0 for s in stats(stack))
                    and stats(stack), 10, "the engines hold no request and no block")
    assert all(s["kv_blocks_used"] == 0 for s in idle)


def test_a_killed_workers_traffic_moves_to_the_other(stack, dclient):
    results: list[object] = []

    def one(i: int) -> None:
        try:
            r = dclient.completions.create(model="tiny-llama", prompt=f"Request {i} about boats", max_tokens=400,
                                           temperature=0, extra_body={"ignore_eos": True, **WORKER})
            results.append(served_by(r))
        except Exception as e:  # noqa: BLE001 - counted below
            results.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    active = wait_for(lambda: (a := [s["num_active_requests"] for s in stats(stack)]) and sum(a) >= 6 and a, 20,
                      "the requests are running")
    victim = stack.workers[active.index(max(active))]
    held = max(active)
    stack.kill(victim)
    for t in threads:
        t.join(90)
    failed = [r for r in results if isinstance(r, Exception)]
    # Dynamo migrates a request whose worker dies (--migration-limit): even the ones it held may finish.
    assert held and len(results) == 8 and len(failed) <= held, (held, results)

    after = []
    for i in range(6):  # the survivor takes everything while the victim is down; none is lost to the dead one
        r = dclient.completions.create(model="tiny-llama", prompt=f"After {i}", max_tokens=4, temperature=0,
                                       extra_body=WORKER)
        after.append(served_by(r))
    survivor = [w for w in stack.workers if w is not victim][0]
    assert stack.worker_stats(survivor)["num_active_requests"] == 0

    assert stack.check() == [victim.name]  # restarted, its stale registration removed
    stack.wait_ready(60)
    assert stack.registered_workers() == 2


def test_sigterm_unregisters_the_worker_at_once_and_lets_its_requests_finish(stack, dclient):
    import signal

    stack.wait_ready(60)
    before = stack.registered_workers()
    finished: list = []

    def stream() -> None:
        chunks = list(dclient.completions.create(model="tiny-llama", prompt="A long tale of the sea.", max_tokens=500,
                                                 temperature=0, stream=True, extra_body={"ignore_eos": True}))
        finished.append((chunks[-1].choices[0].finish_reason, time.monotonic()))

    t = threading.Thread(target=stream)
    t.start()
    busy = wait_for(lambda: [w for w in stack.workers if stack.worker_stats(w)["num_active_requests"]], 20,
                    "a worker is generating")
    member = busy[0]
    term_at = time.monotonic()
    member.proc.send_signal(signal.SIGTERM)
    # Unregistered from discovery first (the frontend sends it nothing new), while its request still runs.
    wait_for(lambda: stack.registered_workers() == before - 1, 10, "the worker unregisters")
    t.join(60)
    # Drained: its request ran to the end after the signal (500 tokens take the worker about a second).
    assert finished[0][0] == "length" and finished[0][1] > term_at
    assert member.proc.wait(30) == 0
    assert stack.registered_workers() == before - 1  # nothing stale left for the frontend
    assert stack.check() == [member.name]
    stack.wait_ready(60)


def test_publish_and_rollback_reach_the_workers(stack, dynamo_repo, dclient):
    from trtpipe.build import build
    from trtpipe.config import load_config
    from trtpipe.repo.versions import rollback

    stack.wait_ready(60)
    text_v1, _ = greedy_chat(dclient)
    second = build(load_config("tiny-llama", ["quantization.format=int4_wo"]), dynamo_repo)
    assert second.published.version == 2
    wait_for(lambda: all(s["version"] == 2 for s in stats(stack)), 20, "every worker serves version 2")
    text_v2, _ = greedy_chat(dclient)
    assert text_v2 != text_v1

    assert rollback(dynamo_repo, "tiny-llama") == 1
    wait_for(lambda: all(s["version"] == 1 for s in stats(stack)), 20, "every worker serves version 1 again")
    assert greedy_chat(dclient)[0] == text_v1


def test_trtpipe_serve_dynamo_serves_then_drains_on_sigterm(dynamo_repo, trtpipe_home):
    import os
    import signal
    import subprocess
    import sys

    from trtpipe.serve.process.process_group import group_members

    port = free_system_port()
    proc = subprocess.Popen([sys.executable, "-m", "trtpipe", "serve", "--dynamo", "--repo", str(dynamo_repo),
                             "--port", str(port), "--dynamo-workers", "1", "--drain-timeout", "5"],
                            env={**os.environ, "TRTPIPE_HOME": str(trtpipe_home)}, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        c = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        r = wait_for(lambda: _try(lambda: c.completions.create(model="tiny-llama", prompt="Hello", max_tokens=3,
                                                               temperature=0)), 60, "serve --dynamo answers")
        assert r.usage.completion_tokens == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert "OpenAI frontend (Dynamo) on" in proc.stderr.read()
        assert group_members(proc.pid) == []  # the frontend and the worker went with it
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def _try(call):
    try:
        return call()
    except Exception:  # noqa: BLE001 - not up yet
        return None
