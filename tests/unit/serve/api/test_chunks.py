"""The hand-built SSE chunks and bodies are exactly OpenAI's shapes (validated by protocol.py's models)."""

from __future__ import annotations

import json

from trtpipe.serve.api.chunks import DONE, ChunkWriter, Logprobs, full_response, sse_error, usage_dict
from trtpipe.serve.errors import RequestError
from trtpipe.serve.openai.choice_stream import ChoiceDone
from trtpipe.serve.protocol import (ChatCompletionChunk, ChatCompletionResponse, CompletionResponse, ErrorResponse,
                                    Usage)

PIECES = {1: b" hello", 2: b"\xe4\xbd", 3: b"\xa0", 4: b"!"}


def _data(chunk: bytes) -> dict:
    assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n")
    return json.loads(chunk[6:])


def writer(chat: bool, include_usage: bool = False, logprobs: bool = False) -> ChunkWriter:
    lp = Logprobs(PIECES.__getitem__, chat, {}) if logprobs else None
    return ChunkWriter(chat=chat, request_id="chatcmpl-1", created=7, model="m\"odel", fingerprint="fp-1",
                       include_usage=include_usage, logprobs=lp)


def test_first_chat_chunk_carries_the_role_with_the_first_text_and_later_ones_only_content():
    w = writer(chat=True)
    first, second = _data(w.text(0, "Hé")), _data(w.text(0, " 你好"))
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "Hé"}
    assert second["choices"][0]["delta"] == {"content": " 你好"}
    for c in (first, second):
        ChatCompletionChunk.model_validate(c)
        assert "usage" not in c and c["model"] == 'm"odel' and c["system_fingerprint"] == "fp-1"
    done = _data(w.finish(ChoiceDone(0, "length", 2)))
    assert done["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    ChatCompletionChunk.model_validate(done)


def test_a_choice_that_produced_no_text_still_announces_its_role_in_the_finish_chunk():
    done = _data(writer(chat=True).finish(ChoiceDone(1, "stop", 0)))
    assert done["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def test_with_include_usage_every_chunk_has_null_usage_and_the_last_has_choices_empty():
    w = writer(chat=False, include_usage=True)
    text = _data(w.text(0, "x"))
    assert text["usage"] is None and text["object"] == "text_completion"
    CompletionResponse.model_validate(text)
    usage = usage_dict(5, {0: ChoiceDone(0, "stop", 3, 8, 6)}, speculative=True)
    last = _data(w.usage(usage))
    assert last["choices"] == [] and last["usage"]["total_tokens"] == 8
    assert last["usage"]["speculation"] == {"num_draft_tokens": 8, "num_accepted_tokens": 6, "acceptance_rate": 0.75}
    Usage.model_validate(last["usage"])


def test_chat_logprobs_carry_each_tokens_bytes_even_a_partial_character():
    w = writer(chat=True, logprobs=True)
    chunk = _data(w.text(0, "你", [(2, -0.5, None), (3, -0.25, None)]))
    content = chunk["choices"][0]["logprobs"]["content"]
    assert [c["bytes"] for c in content] == [[0xE4, 0xBD], [0xA0]]
    assert content[0]["token"] == "\\xe4\\xbd" and content[0]["top_logprobs"] == []
    assert bytes(content[0]["bytes"] + content[1]["bytes"]).decode() == "你"
    ChatCompletionChunk.model_validate(chunk)


def test_completion_logprobs_offsets_continue_across_chunks():
    lp = Logprobs(PIECES.__getitem__, chat=False, offsets={})
    first, second = lp.format(0, [(1, -1.0, None)]), lp.format(0, [(4, -2.0, None), (1, -3.0, None)])
    assert first["text_offset"] == [0] and second["text_offset"] == [6, 7]
    joined = Logprobs.join([first, None, second], chat=False)
    assert joined == {"tokens": [" hello", "!", " hello"], "token_logprobs": [-1.0, -2.0, -3.0],
                      "text_offset": [0, 6, 7], "top_logprobs": None}


def test_full_responses_validate_against_the_openai_models():
    done = {0: ChoiceDone(0, "stop", 2), 1: ChoiceDone(1, "length", 4)}
    usage = usage_dict(3, done, speculative=False)
    chat = json.loads(full_response(chat=True, request_id="c", created=1, model="m", fingerprint=None,
                                    texts=["a", "b"], done=done, logprobs=None, usage=usage))
    ChatCompletionResponse.model_validate(chat)
    assert chat["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}
    completion = json.loads(full_response(chat=False, request_id="c", created=1, model="m", fingerprint="f",
                                          texts=["a", "b"], done=done, logprobs=None, usage=usage))
    CompletionResponse.model_validate(completion)
    assert [c["finish_reason"] for c in completion["choices"]] == ["stop", "length"]


def test_a_stream_error_is_an_envelope_event_and_done_is_the_sentinel():
    event = sse_error(RequestError("gone", type="service_unavailable", code="server_shutting_down", status=503))
    ErrorResponse.model_validate(_data(event))
    assert DONE == b"data: [DONE]\n\n"


def test_top_logprobs_are_formatted_for_chat_and_completions_without_ruled_out_tokens():
    entries = [(1, -0.5, [(1, -0.5), (4, -1.5), (2, float("-inf"))])]
    chat = writer(chat=True, logprobs=True)
    chunk = _data(chat.text(0, " hello", entries))
    [entry] = chunk["choices"][0]["logprobs"]["content"]
    assert [(t["token"], t["logprob"]) for t in entry["top_logprobs"]] == [(" hello", -0.5), ("!", -1.5)]
    ChatCompletionChunk.model_validate(chunk)
    lp = Logprobs(PIECES.__getitem__, chat=False, offsets={})
    assert lp.format(0, entries)["top_logprobs"] == [{" hello": -0.5, "!": -1.5}]
