"""One request to an OpenAI-compatible endpoint, timed chunk by chunk.

The client never raises for a failed request: the error (HTTP status and the server's message, or the
transport error) goes into the record, so a bad request is counted rather than ending the run. Only
the preflight (`resolve_model`) raises, because without a reachable server there is nothing to measure.
"""

from __future__ import annotations

import json
from time import perf_counter

import httpx

from trtpipe.bench.config import BenchConfig, redact_url
from trtpipe.bench.errors import BenchError
from trtpipe.bench.prompts import Prompt, TokenCounter
from trtpipe.bench.results import RequestRecord

MAX_ERROR_CHARS = 200


async def resolve_model(client: httpx.AsyncClient, config: BenchConfig) -> str:
    """Checks the server is reachable and returns `--model`, or else the first id from GET /models."""
    url = f"{config.url}/models"
    where = redact_url(url)
    try:
        response = await client.get(url, headers=config.headers(), timeout=10.0)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise BenchError(f"invalid URL ({exc})", where=where, fix="pass e.g. --url http://127.0.0.1:9000/v1") from None
    except httpx.TransportError as exc:
        raise BenchError(f"cannot connect ({type(exc).__name__}: {exc or 'no details'})", where=where,
                         fix="start the server, or pass --url with its host, port and /v1 path") from None
    if response.status_code in (401, 403):
        raise BenchError(f"server rejected the credentials (HTTP {response.status_code})", where=where,
                         fix="pass --api-key or set TRTPIPE_API_KEY / OPENAI_API_KEY")
    if config.model:
        return config.model  # some servers lack /models; reachability is all we needed
    if response.status_code != 200:
        hint = "" if config.url.endswith("/v1") else "; the base URL usually ends with /v1"
        raise BenchError(f"GET /models returned HTTP {response.status_code}", where=where,
                         fix=f"pass --model explicitly{hint}")
    try:
        return response.json()["data"][0]["id"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise BenchError("GET /models returned no model ids", where=where, fix="pass --model explicitly") from None


def request_body(config: BenchConfig, model: str, prompt_text: str) -> dict:
    body: dict = {"model": model, "max_tokens": config.output_len, "temperature": 0.0, "stream": config.stream}
    if config.endpoint == "chat":
        body["messages"] = [{"role": "user", "content": prompt_text}]
    else:
        body["prompt"] = prompt_text
    if config.stream:
        body["stream_options"] = {"include_usage": True}
    if config.ignore_eos:
        # vLLM and trtpipe serve honour these; OpenAI-compatible servers that do not, ignore them.
        body["ignore_eos"] = True
        body["min_tokens"] = config.output_len
    return body


async def send_request(client: httpx.AsyncClient, config: BenchConfig, model: str, prompt: Prompt,
                       counter: TokenCounter, *, request_id: int, scheduled_s: float, t0: float) -> RequestRecord:
    """Sends one request; every time in the record is relative to `t0` (perf_counter seconds)."""
    record = RequestRecord(request_id=request_id, scheduled_s=scheduled_s, start_s=0.0, end_s=0.0,
                           prompt_tokens=prompt.num_tokens)
    body = request_body(config, model, prompt.text)
    reply = _Reply()
    record.start_s = perf_counter() - t0
    try:
        if config.stream:
            await _stream(client, config, body, record, reply, t0)
        else:
            await _no_stream(client, config, body, record, reply, t0)
    except Exception as exc:  # noqa: BLE001 - any failure of one request is counted, never fatal to the run
        record.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    record.end_s = perf_counter() - t0
    _count_tokens(record, reply, counter, config.stream)
    if record.error and config.api_key:
        record.error = record.error.replace(config.api_key, "***")
    return record


class _Reply:
    """What the response said, as opposed to when (which goes into the record)."""

    def __init__(self):
        self.text_parts: list[str] = []
        self.usage: dict | None = None


async def _arrivals(response: httpx.Response):
    """(arrival time, line) for each SSE line, stamped when the bytes that brought it came off the stream: lines
    that came in one piece share one time exactly (not the microseconds it takes to parse them in turn)."""
    pending = b""
    async for data in response.aiter_bytes():
        now = perf_counter()
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield now, line.rstrip(b"\r").decode("utf-8", "replace")
    if pending:
        yield perf_counter(), pending.decode("utf-8", "replace")


async def _stream(client, config, body, record: RequestRecord, reply: _Reply, t0: float) -> None:
    async with client.stream("POST", config.endpoint_url, json=body, headers=config.headers()) as response:
        record.status_code = response.status_code
        if response.status_code != 200:
            record.error = _http_error(response.status_code, await response.aread())
            return
        done = False
        async for arrived, line in _arrivals(response):
            # After [DONE], read on to the end of the body, as the openai client does: an HTTP/1.1 response
            # left unread closes its connection, and every next request would pay for a new one.
            if done or not line.startswith("data:"):
                continue  # blank separators, `event:` and `:` keep-alive comments
            now = arrived - t0
            payload = line[len("data:"):].strip()
            if payload == "[DONE]":
                done = True
                continue
            try:
                chunk = json.loads(payload)
            except json.JSONDecodeError:
                record.error = f"malformed SSE data: {payload[:MAX_ERROR_CHARS]}"
                return
            if isinstance(chunk, dict) and chunk.get("error"):
                record.error = f"stream error: {_message_of(chunk)}"
                return
            reply.usage = chunk.get("usage") or reply.usage
            content = _content_of(chunk, config.endpoint, is_delta=True)
            if content:
                record.chunk_times_s.append(now)
                reply.text_parts.append(content)


async def _no_stream(client, config, body, record: RequestRecord, reply: _Reply, t0: float) -> None:
    response = await client.post(config.endpoint_url, json=body, headers=config.headers())
    now = perf_counter() - t0
    record.status_code = response.status_code
    if response.status_code != 200:
        record.error = _http_error(response.status_code, response.content)
        return
    try:
        data = response.json()
    except ValueError:
        record.error = f"malformed JSON response: {response.text[:MAX_ERROR_CHARS]}"
        return
    reply.usage = data.get("usage")
    content = _content_of(data, config.endpoint, is_delta=False)
    if content:
        # Without streaming the first token arrives with the last, so TTFT == E2E (as in vLLM).
        record.chunk_times_s.append(now)
        reply.text_parts.append(content)


def _content_of(data: dict, endpoint: str, *, is_delta: bool) -> str:
    choices = data.get("choices") or []
    if not choices:
        return ""
    choice = choices[0]
    if endpoint == "completions":
        return choice.get("text") or ""
    message = choice.get("delta" if is_delta else "message") or {}
    # Reasoning models stream their thinking first; it is generated output all the same.
    return message.get("content") or message.get("reasoning_content") or message.get("reasoning") or ""


def _count_tokens(record: RequestRecord, reply: _Reply, counter: TokenCounter, is_stream: bool) -> None:
    usage = reply.usage or {}
    if isinstance(usage.get("prompt_tokens"), int):
        record.prompt_tokens = usage["prompt_tokens"]
    if isinstance(usage.get("completion_tokens"), int):
        record.output_tokens, record.output_tokens_source = usage["completion_tokens"], "usage"
        return
    text = "".join(reply.text_parts)
    if counter.is_exact:
        record.output_tokens, record.output_tokens_source = counter.count(text), "tokenizer"
    elif is_stream:
        record.output_tokens, record.output_tokens_source = len(record.chunk_times_s), "chunks"
    else:
        record.output_tokens, record.output_tokens_source = len(text.split()), "words"


def _http_error(status_code: int, raw_body: bytes) -> str:
    try:
        message = _message_of(json.loads(raw_body))
    except (ValueError, TypeError):
        message = raw_body.decode("utf-8", "replace").strip()
    return f"HTTP {status_code}: {message[:MAX_ERROR_CHARS]}" if message else f"HTTP {status_code}"


def _message_of(data) -> str:
    """The human part of an OpenAI error envelope, a FastAPI `detail`, or a TGI `error` string."""
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            return str(error.get("message", error))
        if error is not None:
            return str(error)
    return str(data)
