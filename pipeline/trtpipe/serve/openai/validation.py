"""OpenAI request -> what the engine is asked for, or a RequestError naming the parameter.

Everything a client can get wrong is caught here, before Triton is called, with a 400 that names the
parameter, the limit and the value given.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from trtpipe.serve import errors
from trtpipe.serve.engine_client.calls import EngineCall
from trtpipe.serve.openai.reasoning import template_has_reasoning
from trtpipe.serve.openai.served_models import ServedModel
from trtpipe.serve.openai.structured_outputs import Guide, check_guide, request_guide, require_guided_decoding
from trtpipe.serve.openai.text import ChatTemplateError
from trtpipe.serve.openai.tool_calls import ToolPlan, plan_tools, template_tool_calls
from trtpipe.serve.openai.tool_parsers import parser_for_template
from trtpipe.serve.protocol import ChatCompletionRequest, CompletionRequest

MAX_STOP_STRINGS = 4
# vLLM's request extensions that change the output and that this server does not implement, with the value that
# means "not used". Any other value is a 400 naming the field: never silently ignored. (Unknown fields outside
# this table are ignored, as vLLM and TGI ignore them: clients send vendor extras through extra_body.)
UNSUPPORTED_EXTENSIONS = {
    "min_p": 0.0, "prompt_logprobs": None, "use_beam_search": False, "length_penalty": 1.0,
    "truncate_prompt_tokens": None, "skip_special_tokens": True, "spaces_between_special_tokens": True,
    "add_generation_prompt": True, "continue_final_message": False, "add_special_tokens": None,
    "return_tokens_as_token_ids": False, "logits_processors": None, "bad_words": None, "allowed_token_ids": None,
    "documents": None, "chat_template": None, "guided_whitespace_pattern": None, "guided_decoding_backend": None,
}
UNSUPPORTED_STREAM_OPTIONS = {"continuous_usage_stats": False}
# Names the chat template itself is given; chat_template_kwargs may not replace them.
TEMPLATE_NAMES = frozenset({"messages", "tools", "add_generation_prompt", "bos_token", "eos_token"})


@dataclass(frozen=True)
class Generation:
    """A validated request: one engine call per prompt, and what the frontend itself applies to the text.

    Choice `p * n + j` is the j-th sample for prompt p (OpenAI's order for a list of prompts)."""

    calls: list[EngineCall]
    prompt_texts: list[str]
    stop_strings: list[str]
    n: int
    include_stop_str: bool = False  # a matched stop string stays in the text (vLLM's include_stop_str_in_output)
    priority: int = 0  # admission order while waiting: lower first
    logprobs: bool = False
    echo: bool = False
    top_logprobs: int = 0  # alternatives per token (trtpipe's output tensors; reference engine)
    tool_plan: ToolPlan | None = None  # chat with tools: how each choice's text becomes tool calls
    reasoning_prompt: str | None = None  # set when the template separates <think> reasoning

    @property
    def num_choices(self) -> int:
        return len(self.calls) * self.n

    @property
    def num_prompt_tokens(self) -> int:
        return sum(len(c.input_ids) for c in self.calls)

    def choice_call(self, index: int) -> EngineCall:
        call = self.calls[index // self.n]
        j = index % self.n
        if j and call.seed is not None:
            call = replace(call, seed=(call.seed + j) % 2**63)  # n choices from one seed must still differ
        return call


def check_prompt_size(req, model: ServedModel, *, chat: bool) -> None:
    """Refuse a prompt that cannot fit before any of it is rendered or tokenized: cheap, on the raw text.

    No token stands for more than `max_token_chars` characters, so text longer than max_input_len times that
    can never fit. NOTE: this holds for tokenizers that keep every character (byte-level BPE, SentencePiece);
    one whose normalizer deletes characters would be refused early here."""
    limit = model.spec.max_input_len * model.text.max_token_chars
    if not limit:
        return
    if chat:
        size, param = sum(_content_chars(m.content) for m in req.messages), "messages"
    elif isinstance(req.prompt, str):
        size, param = len(req.prompt), "prompt"
    else:
        # Token-id prompts are checked exactly, and cheaply, by _engine_call.
        size, param = max((len(p) for p in req.prompt if isinstance(p, str)), default=0), "prompt"
    if size > limit:
        raise errors.context_too_long(param, (
            f"The prompt is {size} characters long; this model reads at most {model.spec.max_input_len} prompt "
            f"tokens, which hold at most {limit} characters of text. Shorten the prompt."))


def _content_chars(content) -> int:
    if isinstance(content, list):
        return sum(len(p.text or "") for p in content)
    return len(content or "")


def _max_tokens_param(req) -> tuple[str, int | None]:
    value = getattr(req, "max_completion_tokens", None)
    if value is not None:
        return "max_completion_tokens", value
    return "max_tokens", req.max_tokens


def _stop_strings(stop) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > MAX_STOP_STRINGS:
        raise errors.invalid_parameter("stop",
                                       f"`stop` takes at most {MAX_STOP_STRINGS} sequences. Given: {len(stops)}")
    if any(s == "" for s in stops):
        raise errors.invalid_parameter("stop", "`stop` sequences must not be empty strings")
    return stops


def _common_checks(req) -> None:
    if req.logit_bias:
        raise errors.unsupported_parameter("logit_bias")
    _refuse_unsupported(req.model_extra, UNSUPPORTED_EXTENSIONS, "")
    if req.stream_options is not None:
        if not req.stream:
            raise errors.invalid_parameter("stream_options", "`stream_options` is only allowed when `stream` is true")
        _refuse_unsupported(req.stream_options.model_extra, UNSUPPORTED_STREAM_OPTIONS, "stream_options.")


def _refuse_unsupported(given: dict | None, table: dict, prefix: str) -> None:
    for name, off in table.items():
        value = (given or {}).get(name)
        if value is not None and value != off:
            raise errors.unsupported_parameter(prefix + name)


def _extra_stop_ids(req, vocab: int) -> list[list[int]]:
    ids = req.stop_token_ids or []
    bad = [t for t in ids if not 0 <= t < vocab]
    if bad:
        raise errors.invalid_parameter("stop_token_ids",
                                       f"`stop_token_ids` must be in 0..{vocab - 1}. Given: {bad[0]}")
    return [[t] for t in ids]


def _template_kwargs(req) -> dict:
    kwargs = req.chat_template_kwargs or {}
    clash = sorted(TEMPLATE_NAMES & set(kwargs))
    if clash:
        raise errors.invalid_parameter("chat_template_kwargs", f"`chat_template_kwargs` may not set `{clash[0]}`: "
                                                               "the server passes it to the template itself")
    return kwargs


def _engine_call(req, model: ServedModel, prompt_ids: list[int], max_tokens_value: int | None, param: str,
                 prompt_param: str, logprobs: bool, guide: Guide | None = None) -> EngineCall:
    spec = model.spec
    if not prompt_ids:
        raise errors.invalid_parameter(prompt_param, "the prompt is empty")
    vocab = model.text.vocab_size
    bad = [t for t in prompt_ids if not 0 <= t < vocab]
    if bad:
        raise errors.invalid_parameter(prompt_param,
                                       f"`{prompt_param}` token ids must be in 0..{vocab - 1}. Given: {bad[0]}")
    n_prompt = len(prompt_ids)
    if max_tokens_value is None:
        # The configured default, shortened so that a prompt that fits never fails for want of room.
        max_tokens = max(1, min(spec.default_max_tokens, spec.max_seq_len - n_prompt))
    else:
        max_tokens = max_tokens_value
    if n_prompt > spec.max_input_len or n_prompt + max_tokens > spec.max_seq_len:
        raise errors.context_too_long(prompt_param, (
            f"This model's maximum context length is {spec.max_seq_len} tokens (at most {spec.max_input_len} of "
            f"them prompt). You requested {n_prompt + max_tokens} tokens ({n_prompt} in the prompt, {max_tokens} "
            f"for the completion). Shorten the prompt or lower `{param}`."))
    if req.min_tokens > max_tokens:
        raise errors.invalid_parameter("min_tokens",
                                       f"`min_tokens` must be <= `{param}` ({max_tokens}). Given: {req.min_tokens}")
    eos = [] if req.ignore_eos else model.text.eos_token_ids
    call = EngineCall(
        input_ids=list(prompt_ids), max_new_tokens=max_tokens,
        end_id=eos[0] if eos else None,
        # Further end-of-sequence ids (e.g. Llama 3's <|end_of_text|> beside <|eot_id|>) are stop words.
        stop_token_ids=[[e] for e in eos[1:]] + _extra_stop_ids(req, vocab),
        temperature=1.0 if req.temperature is None else req.temperature, top_k=req.top_k or 0,
        top_p=1.0 if req.top_p is None else req.top_p, seed=req.seed, min_tokens=req.min_tokens,
        presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty,
        repetition_penalty=req.repetition_penalty, return_log_probs=logprobs,
        guide_type=guide.guide_type if guide else None, guide=guide.guide if guide else None)
    return call


def _check_max_tokens(req, model: ServedModel) -> tuple[str, int | None]:
    param, value = _max_tokens_param(req)
    if value is not None and value > model.spec.max_max_tokens:
        raise errors.invalid_parameter(param, f"`{param}` must be <= {model.spec.max_max_tokens}. Given: {value}")
    return param, value


def _check_top_logprobs(model: ServedModel, k: int, param: str) -> None:
    limit = model.spec.max_top_log_probs
    if k > limit:
        why = (f"must be <= {limit} for this model" if limit else
               "must be 0 for this model: its engine returns the sampled token's log-probability only")
        raise errors.invalid_parameter(param, f"`{param}` {why} (backend {model.spec.backend}). Given: {k}")


def _checked_guide(req, model: ServedModel, tool_guide: Guide | None = None) -> Guide | None:
    guide = request_guide(req)
    if tool_guide is not None:
        if guide is not None:
            raise errors.invalid_parameter(guide.param,
                                           f"`{guide.param}` cannot be combined with a forced `tool_choice`")
        guide = tool_guide
    if guide is not None:
        # A forced tool call (tool_choice required or named) is what asked for the tools' guide.
        require_guided_decoding(guide, model, "tool_choice" if guide is tool_guide else None)
        check_guide(guide, model)
    return guide


def _message_text(i: int, m) -> str:
    if isinstance(m.content, list):
        parts = []
        for j, p in enumerate(m.content):
            if p.type != "text" or p.text is None:
                raise errors.invalid_parameter(f"messages.{i}.content.{j}.type", f"`messages[{i}].content[{j}]`: only "
                                               f"text parts are supported. Given type {p.type!r}")
            parts.append(p.text)
        return "".join(parts)
    return m.content or ""


def validate_chat(req: ChatCompletionRequest, model: ServedModel) -> Generation:
    _common_checks(req)
    _check_top_logprobs(model, req.top_logprobs or 0, "top_logprobs")
    if req.top_logprobs is not None and not req.logprobs:
        raise errors.invalid_parameter("top_logprobs", "`top_logprobs` requires `logprobs` to be true")
    param, value = _check_max_tokens(req, model)
    stops = _stop_strings(req.stop)
    template = model.text.chat_template
    plan, tool_guide, template_tools = plan_tools(req, parser_for_template(template))
    try:
        prompt = model.text.render_chat([_template_message(i, m) for i, m in enumerate(req.messages)],
                                        tools=template_tools, extra=_template_kwargs(req))
    except ChatTemplateError as e:
        raise errors.invalid_parameter("messages", str(e)) from None
    guide = _checked_guide(req, model, tool_guide)
    call = _engine_call(req, model, model.text.encode(prompt), value, param, "messages", req.logprobs, guide)
    top = (req.top_logprobs or 0) if req.logprobs else 0
    call = replace(call, num_top_log_probs=top)
    return Generation([call], [prompt], stops, req.n, req.include_stop_str_in_output, req.priority,
                      logprobs=req.logprobs, top_logprobs=top, tool_plan=plan,
                      reasoning_prompt=prompt if template_has_reasoning(template) else None)


def _template_message(i: int, m) -> dict:
    """A message as Hugging Face chat templates read it (tool calls with object arguments, tool_call_id)."""
    msg = {"role": m.role, "content": _message_text(i, m)}
    if m.name:
        msg["name"] = m.name
    if m.tool_calls:
        msg["tool_calls"] = template_tool_calls(m.tool_calls)
    if m.tool_call_id:
        msg["tool_call_id"] = m.tool_call_id
    return msg


def _prompts(req: CompletionRequest, model: ServedModel) -> list[tuple[list[int], str]]:
    prompt = req.prompt
    if isinstance(prompt, str):
        return [(model.text.encode(prompt), prompt)]
    if not prompt:
        raise errors.invalid_parameter("prompt", "`prompt` must not be empty")
    if all(isinstance(p, int) for p in prompt):
        return [(list(prompt), None)]
    if all(isinstance(p, str) for p in prompt):
        return [(model.text.encode(p), p) for p in prompt]
    return [(list(p), None) for p in prompt]


def validate_completion(req: CompletionRequest, model: ServedModel) -> Generation:
    _common_checks(req)
    _check_top_logprobs(model, req.logprobs or 0, "logprobs")
    if req.suffix:
        raise errors.unsupported_parameter("suffix")
    if req.best_of is not None and req.best_of != req.n:
        raise errors.invalid_parameter("best_of", f"`best_of` must equal `n` ({req.n}). Given: {req.best_of}")
    want_logprobs = req.logprobs is not None
    if req.echo and want_logprobs and not model.spec.returns_prompt_log_probs:
        raise errors.invalid_parameter("echo", f"`echo` with `logprobs` needs prompt log-probabilities, which this "
                                       f"model's engine does not return (backend {model.spec.backend})")
    param, value = _check_max_tokens(req, model)
    stops = _stop_strings(req.stop)
    prompts = _prompts(req, model)
    if len(prompts) * req.n > 16:
        raise errors.invalid_parameter("n",
                                       f"at most 16 choices per request (prompts x `n`). Given: {len(prompts) * req.n}")
    guide = _checked_guide(req, model)
    calls, texts = [], []
    for ids, text in prompts:
        call = _engine_call(req, model, ids, value, param, "prompt", want_logprobs, guide)
        call = replace(call, num_top_log_probs=req.logprobs or 0, return_prompt_log_probs=req.echo and want_logprobs)
        calls.append(call)
        if text is None:  # token ids: echo shows them decoded, special tokens included
            text = model.text.tokenizer.decode(ids, skip_special_tokens=False) if req.echo else ""
        texts.append(text)
    return Generation(calls, texts, stops, req.n, req.include_stop_str_in_output, req.priority,
                      logprobs=want_logprobs, echo=req.echo,
                      top_logprobs=req.logprobs or 0)
