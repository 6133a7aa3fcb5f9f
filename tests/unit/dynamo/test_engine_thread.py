"""EngineThread on a real published repository: requests, aborts, KV events, and the switch on publish/rollback."""

from __future__ import annotations

import asyncio

import pytest

from trtpipe.dynamo.engine_thread import EngineThread, load_version, wait_idle
from trtpipe.engine import EngineRequest, SamplingParams
from trtpipe.repo import layout

from .test_kv_events import RecordingPublisher


@pytest.fixture(scope="module")
def repo(tmp_path_factory, trtpipe_home):
    from trtpipe.build import build
    from trtpipe.config import load_config

    repo = tmp_path_factory.mktemp("dynamo-thread") / "repo"
    build(load_config("tiny-llama"), repo)
    return repo


@pytest.fixture
def thread(repo):
    model_dir = repo / "tiny-llama-engine"
    t = EngineThread(model_dir, load_version(model_dir, layout.live_version(model_dir)))
    t.kv_publisher = RecordingPublisher()
    t.start()
    yield t
    t.shutdown()


def req(rid: str, n: int = 8, prompt: list[int] | None = None) -> EngineRequest:
    return EngineRequest(rid, prompt or list(range(10, 80)), n, sampling=SamplingParams(temperature=0.0))


async def run(thread: EngineThread, request: EngineRequest) -> list:
    q = thread.submit(request, asyncio.get_running_loop())
    outs = []
    while not (outs and getattr(outs[-1], "finished", True)):
        outs.append(await asyncio.wait_for(q.get(), 30))
    return outs


async def test_requests_run_to_their_finish_and_their_blocks_are_announced(thread):
    outs = await run(thread, req("a"))
    assert sum(len(o.new_token_ids) for o in outs) == 8 and outs[-1].finish_reason == "length"
    assert [c[0] for c in thread.kv_publisher.calls] == ["stored"]  # 70 prompt tokens: 2 full blocks of 32
    assert thread.kv_publisher.calls[0][2] == [32, 32]
    outs = await run(thread, req("b"))
    assert outs[0].num_reused_prompt_tokens == 64


async def test_an_abort_ends_the_request_and_frees_its_blocks(thread):
    q = thread.submit(req("long", n=400), asyncio.get_running_loop())
    first = await asyncio.wait_for(q.get(), 30)
    assert not first.finished
    thread.abort("long")
    while not (last := await asyncio.wait_for(q.get(), 30)).finished:
        pass
    assert last.finish_reason == "cancelled" and thread.num_aborted == 1
    assert wait_idle(thread, 5) and thread.stats()["kv_blocks_used"] == 0


async def test_a_new_live_version_takes_over_once_the_old_ones_requests_are_done(thread, repo):
    from trtpipe.build import build
    from trtpipe.config import load_config
    from trtpipe.repo.versions import rollback

    before = await run(thread, req("v1"))
    q = thread.submit(req("in-flight", n=200), asyncio.get_running_loop())
    await asyncio.wait_for(q.get(), 30)
    await asyncio.to_thread(build, load_config("tiny-llama", ["quantization.format=int4_wo"]), repo)
    for _ in range(200):  # the watcher loads version 2; the switch waits for "in-flight"
        if thread._next is not None or thread.current.version == 2:
            break
        await asyncio.sleep(0.05)
    while not (out := await asyncio.wait_for(q.get(), 30)).finished:
        pass
    assert out.finish_reason == "length"  # the old engine finished it
    after = await run(thread, req("v2"))
    assert thread.stats()["version"] == 2
    assert [t for o in after for t in o.new_token_ids] != [t for o in before for t in o.new_token_ids]
    removed = [c for c in thread.kv_publisher.calls if c[0] == "removed"]
    assert removed  # the old engine's cached blocks were announced gone

    await asyncio.to_thread(rollback, repo, "tiny-llama")
    for _ in range(200):
        if thread.current.version == 1:
            break
        await asyncio.sleep(0.05)
    again = await run(thread, req("v1-again"))
    assert [t for o in again for t in o.new_token_ids] == [t for o in before for t in o.new_token_ids]
