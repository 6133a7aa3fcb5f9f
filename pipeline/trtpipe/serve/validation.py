"""OpenAI request -> what the engine is asked for, or a RequestError naming the parameter.

Everything a client can get wrong is caught here, before Triton is called, with a 400 that names the
parameter, the limit and the value given.
"""

from __future__ import annotations

from dataclasses import dataclass

from trtpipe.serve.protocol import ChatCompletionRequest, CompletionRequest
from trtpipe.serve.registry import ServedModel
from trtpipe.serve.text import ChatTemplateError
from trtpipe.serve.triton_stream import EngineCall


class RequestError(Exception):
    """A client error: `type` is stable and used both in the error envelope and as a metrics label."""

    def __init__(self, message: str, *, param: str | None = None, type: str = "invalid_request_error",
                 code: str | None = None, status: int = 400):
        super().__init__(message)
        self.message, self.param, self.type, self.code, self.status = message, param, type, code, status


@dataclass(frozen=True)
class Generation:
    """A validated request: the engine call plus what the frontend itself applies to the text."""

    call: EngineCall
    prompt_text: str
    stop_strings: list[str]
    max_tokens: int
    n: int


def _max_tokens(req, model: ServedModel) -> int:
    value = getattr(req, "max_completion_tokens", None) or req.max_tokens
    if value is None:
        return model.spec.default_max_tokens
    if value > model.spec.max_max_tokens:
        param = "max_completion_tokens" if getattr(req, "max_completion_tokens", None) else "max_tokens"
        raise RequestError(f"`{param}` must be <= {model.spec.max_max_tokens}. Given: {value}", param=param)
    return value


def _stop_strings(stop) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > 4:
        raise RequestError(f"`stop` takes at most 4 sequences. Given: {len(stops)}", param="stop")
    return stops


def _engine_call(req, model: ServedModel, prompt_ids: list[int], max_tokens: int) -> EngineCall:
    spec = model.spec
    if not prompt_ids:
        raise RequestError("the prompt is empty", param="messages" if isinstance(req, ChatCompletionRequest) else "prompt")
    if len(prompt_ids) > spec.max_input_len or len(prompt_ids) + max_tokens > spec.max_seq_len:
        raise RequestError(
            f"This model's maximum context length is {spec.max_seq_len} tokens (at most {spec.max_input_len} of "
            f"them prompt). You requested {len(prompt_ids) + max_tokens} tokens ({len(prompt_ids)} in the "
            f"prompt, {max_tokens} for the completion). Shorten the prompt or lower max_tokens.",
            param="messages" if isinstance(req, ChatCompletionRequest) else "prompt", code="context_length_exceeded")
    eos = [] if req.ignore_eos else model.text.eos_token_ids
    temperature = 1.0 if req.temperature is None else req.temperature
    return EngineCall(
        input_ids=prompt_ids, max_new_tokens=max_tokens,
        end_id=eos[0] if eos else None,
        # Further end-of-sequence ids (e.g. Llama 3's <|end_of_text|> beside <|eot_id|>) are stop words.
        stop_token_ids=[[e] for e in eos[1:]],
        temperature=temperature, top_k=req.top_k or 0, top_p=1.0 if req.top_p is None else req.top_p,
        seed=req.seed, min_tokens=req.min_tokens, presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty, repetition_penalty=req.repetition_penalty,
    )


def validate_chat(req: ChatCompletionRequest, model: ServedModel) -> Generation:
    if req.logprobs or req.top_logprobs:
        raise RequestError("`logprobs` is not supported by this server yet", param="logprobs")
    max_tokens = _max_tokens(req, model)
    stops = _stop_strings(req.stop)
    try:
        prompt = model.text.render_chat([{"role": m.role, "content": m.text()} for m in req.messages])
    except ChatTemplateError as e:
        raise RequestError(str(e), param="messages") from None
    ids = model.text.encode(prompt)
    return Generation(_engine_call(req, model, ids, max_tokens), prompt, stops, max_tokens, req.n)


def validate_completion(req: CompletionRequest, model: ServedModel) -> Generation:
    if req.logprobs:
        raise RequestError("`logprobs` is not supported by this server yet", param="logprobs")
    max_tokens = _max_tokens(req, model)
    stops = _stop_strings(req.stop)
    prompt = req.prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
        vocab = model.text.tokenizer.get_vocab_size()
        if any(not 0 <= t < vocab for t in prompt):
            raise RequestError(f"`prompt` token ids must be in 0..{vocab - 1}", param="prompt")
        ids, text = list(prompt), model.text.tokenizer.decode(prompt, skip_special_tokens=False)
    elif isinstance(prompt, list):
        if len(prompt) != 1:
            raise RequestError("`prompt` as a list of strings takes exactly one string here", param="prompt")
        text = prompt[0]
        ids = model.text.encode(text)
    else:
        text = prompt
        ids = model.text.encode(text)
    return Generation(_engine_call(req, model, ids, max_tokens), text, stops, max_tokens, req.n)
