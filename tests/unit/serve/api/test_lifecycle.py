"""RequestLifecycle: one request's admission, engine streams, metrics and release, with both sinks.

The engine side is a scripted stand-in for ReplicaPool.generate (the real Triton path is tests/e2e); the model's
text side (tokenizer, chat template) is the real tiny-llama one.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from trtpipe.serve.api.admission import Admission
from trtpipe.serve.api.chunks import sink_for
from trtpipe.serve.api.lifecycle import RequestLifecycle
from trtpipe.serve.api.metrics import FrontendMetrics
from trtpipe.serve.engine_client.calls import Final, TokenDelta
from trtpipe.serve.errors import RequestError
from trtpipe.serve.openai.served_models import ServedModel
from trtpipe.serve.openai.validation import validate_chat
from trtpipe.serve.protocol import ChatCompletionRequest
from tests.unit.serve.served_model import tiny_served_model

REPLY = "Hello there, world"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> ServedModel:
    return tiny_served_model(tmp_path_factory)


class ScriptedPool:
    """Streams REPLY's tokens one per response, then Final; records every call; can hold before the first token."""

    def __init__(self, model: ServedModel):
        self.tokens = model.text.encode(REPLY)
        self.calls: list = []
        self.hold = asyncio.Event()
        self.hold.set()

    async def generate(self, engine, call, outputs, pin=None):
        self.calls.append((engine, call, outputs))
        await self.hold.wait()
        for t in self.tokens[:call.max_new_tokens]:
            yield TokenDelta([t], None)
        yield Final(min(len(self.tokens), call.max_new_tokens))


def request(model: ServedModel, **kw):
    req = ChatCompletionRequest(model=model.name, messages=[{"role": "user", "content": "Hi"}], max_tokens=50, **kw)
    return req, validate_chat(req, model)


def sample(metrics: FrontendMetrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, {"model": "tiny-llama", **labels}) or 0.0


async def drain(lifecycle: RequestLifecycle, sink) -> list[bytes]:
    return [chunk async for chunk in lifecycle.run(sink)]


async def test_a_stream_and_a_json_body_carry_the_same_text_finish_reason_and_usage(model):
    texts, usages, reasons = [], [], []
    for stream in (True, False):
        req, gen = request(model, stream=stream, stream_options={"include_usage": True} if stream else None)
        metrics = FrontendMetrics()
        life = RequestLifecycle(model, gen, admission=Admission(4, 4), pool=ScriptedPool(model), metrics=metrics,
                                arrival=0.0)
        chunks = await drain(life, sink_for(req, model, gen, chat=True))
        if stream:
            events = [json.loads(c[6:]) for c in b"".join(chunks).split(b"\n\n") if c and c != b"data: [DONE]"]
            texts.append("".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]))
            reasons.append(next(e["choices"][0]["finish_reason"] for e in events
                                if e["choices"] and e["choices"][0]["finish_reason"]))
            usages.append(events[-1]["usage"])
            assert b"".join(chunks).endswith(b"data: [DONE]\n\n")
        else:
            assert len(chunks) == 1  # the JSON sink sends one body
            body = json.loads(chunks[0])
            texts.append(body["choices"][0]["message"]["content"])
            reasons.append(body["choices"][0]["finish_reason"])
            usages.append(body["usage"])
        assert sample(metrics, "trtpipe_request_success_total", finished_reason="stop") == 1
    n = len(model.text.encode(REPLY))
    assert texts == [REPLY, REPLY] and reasons == ["stop", "stop"]
    assert usages[0] == usages[1] == {"prompt_tokens": gen.num_prompt_tokens, "completion_tokens": n,
                                      "total_tokens": gen.num_prompt_tokens + n}


async def test_a_request_closed_early_gives_its_slots_back_once_and_counts_each_choice_as_abort(model):
    req, gen = request(model, stream=True, n=2)
    admission, metrics = Admission(4, 4), FrontendMetrics()
    life = RequestLifecycle(model, gen, admission=admission, pool=ScriptedPool(model), metrics=metrics, arrival=0.0)
    assert admission.num_running == 2  # one slot per choice, taken when the lifecycle is created
    chunks = life.run(sink_for(req, model, gen, chat=True))
    await chunks.__anext__()  # the client got one chunk, then went away
    await chunks.aclose()
    life.release()  # the response releases too: a second release changes nothing
    assert admission.num_running == 0
    assert sample(metrics, "trtpipe_request_success_total", finished_reason="abort") == 2


async def test_a_queued_request_waits_for_the_slot_and_a_full_queue_is_a_429_before_anything_runs(model):
    req, gen = request(model, stream=False)
    admission, metrics, pool = Admission(1, 1), FrontendMetrics(), ScriptedPool(model)
    first = RequestLifecycle(model, gen, admission=admission, pool=pool, metrics=metrics, arrival=0.0)
    second = RequestLifecycle(model, gen, admission=admission, pool=pool, metrics=metrics, arrival=0.0)
    assert (first.admitted, second.admitted, admission.num_waiting) == (True, False, 1)
    with pytest.raises(RequestError) as refused:
        RequestLifecycle(model, gen, admission=admission, pool=pool, metrics=metrics, arrival=0.0)
    assert (refused.value.status, refused.value.code) == (429, "rate_limit_exceeded")

    pool.hold.clear()  # the first request holds its slot until the engine answers
    first_task = asyncio.create_task(drain(first, sink_for(req, model, gen, chat=True)))
    second_task = asyncio.create_task(drain(second, sink_for(req, model, gen, chat=True)))
    await asyncio.sleep(0.01)
    assert len(pool.calls) == 1  # the queued one has not reached the engine
    pool.hold.set()
    await asyncio.gather(first_task, second_task)
    assert len(pool.calls) == 2 and (admission.num_running, admission.num_waiting) == (0, 0)


async def test_a_queued_request_cancelled_before_admission_leaves_the_queue_and_counts_as_abort(model):
    req, gen = request(model, stream=True)
    admission, metrics, pool = Admission(1, 1), FrontendMetrics(), ScriptedPool(model)
    pool.hold.clear()
    first = RequestLifecycle(model, gen, admission=admission, pool=pool, metrics=metrics, arrival=0.0)
    queued = RequestLifecycle(model, gen, admission=admission, pool=pool, metrics=metrics, arrival=0.0)
    task = asyncio.create_task(drain(queued, sink_for(req, model, gen, chat=True)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (admission.num_running, admission.num_waiting) == (1, 0)  # only the first holds a slot
    first.release()
    assert admission.num_running == 0
    # Both ended before they finished: the cancelled one (while queued) and the first (released unrun).
    assert sample(metrics, "trtpipe_request_success_total", finished_reason="abort") == 2
