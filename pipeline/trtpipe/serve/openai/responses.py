"""A /v1/responses request -> the chat path's request, validated as chat is, with every error in Responses terms.

The Responses API is served by the Chat Completions machinery: `instructions` and the `input` items (after the
conversation of `previous_response_id`, when given) become chat messages (responses_input.py), `max_output_tokens`
becomes `max_completion_tokens`, the flat function tools and `tool_choice` take chat's shapes, `text.format`
becomes `response_format`; `validate_chat` then checks, renders and tokenizes it as it does a chat request. Its
errors name chat's parameters, so they are renamed here (`messages` -> `input`, ...).

A field of the Responses API that this server does not implement is a 400 naming it unless it has the value that
means "not used" (UNSUPPORTED); a Chat Completions field sent here is a 400 naming the Responses field to use
(CHAT_ONLY). trtpipe's sampling extensions (`top_k`, `seed`, `ignore_eos`, ...) pass through as in chat.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from trtpipe.serve import errors
from trtpipe.serve.errors import RequestError
from trtpipe.serve.openai.response_store import StoredResponse
from trtpipe.serve.openai.responses_input import conversation_messages, input_items
from trtpipe.serve.openai.served_models import ServedModel
from trtpipe.serve.openai.validation import UNSUPPORTED_EXTENSIONS, Generation, check_prompt_size, validate_chat
from trtpipe.serve.protocol import ChatCompletionRequest, ResponsesRequest

# The Responses API's fields this server does not implement, with the values that mean "not used".
UNSUPPORTED = {
    "background": (False,), "conversation": (), "include": ([],), "max_tool_calls": (), "prompt": (),
    "prompt_cache_key": (), "prompt_cache_retention": (), "prompt_cache_options": (), "reasoning": ({},),
    "service_tier": ("auto", "default"), "top_logprobs": (0,), "truncation": ("disabled",),
    "context_management": (), "access_programs": (), "background_options": (), "image": (), "moderation": (),
}
# Chat Completions fields that have no place here -> the Responses field that does their job (None: none does).
CHAT_ONLY = {
    "messages": "input", "max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens",
    "response_format": "text.format", "functions": "tools", "function_call": "tool_choice", "n": None,
    "logprobs": None, "logit_bias": None, "echo": None, "suffix": None, "best_of": None,
    "guided_json": "text.format", "guided_regex": None, "guided_choice": None, "guided_grammar": None,
    "structured_outputs": "text.format",
}
# trtpipe's (and vLLM's) sampling extensions, passed to the chat path as they are; the vLLM extensions this server
# does not implement go along so that validate_chat refuses them by name.
EXTENSIONS = ("top_k", "min_tokens", "ignore_eos", "seed", "presence_penalty", "frequency_penalty",
              "repetition_penalty", "stop", "include_stop_str_in_output", "stop_token_ids", "priority",
              "chat_template_kwargs", *UNSUPPORTED_EXTENSIONS)
# Chat's parameter names in validate_chat's errors -> the Responses names.
RENAMED = {"messages": "input", "max_completion_tokens": "max_output_tokens", "response_format": "text.format"}
MAX_METADATA_KEY, MAX_METADATA_VALUE = 64, 512


@dataclass(frozen=True)
class PreparedResponse:
    """A validated Responses request: what the engine is asked for, and what the Response object and the store
    keep of it."""

    gen: Generation
    context: list[dict]  # the items this response answers: the previous conversation, then this `input`
    num_context_chars: int  # characters of text in `context` (the store's bound counts them)
    settings: dict  # the request's settings as the Response object echoes them


def _refuse_unsupported(req: ResponsesRequest) -> None:
    extra = req.model_extra or {}
    for name, off in UNSUPPORTED.items():
        if extra.get(name) is not None and extra[name] not in off:
            raise errors.unsupported_parameter(name)
    for name, instead in CHAT_ONLY.items():
        if name in extra:
            hint = f"; /v1/responses takes `{instead}`" if instead else " by /v1/responses"
            raise errors.invalid_parameter(name, f"`{name}` is a Chat Completions parameter, not supported{hint}")
    options = extra.get("stream_options")
    if options is not None:
        if not req.stream:
            raise errors.invalid_parameter("stream_options", "`stream_options` is only allowed when `stream` is true")
        for key, value in (options.items() if isinstance(options, dict) else [("", options)]):
            if key != "include_obfuscation" or value is not False:  # trtpipe never pads its events
                raise errors.unsupported_parameter(f"stream_options.{key}" if key else "stream_options")
    if req.text is not None and req.text.verbosity is not None:
        raise errors.unsupported_parameter("text.verbosity")
    for key, value in (req.metadata or {}).items():
        if len(key) > MAX_METADATA_KEY or len(value) > MAX_METADATA_VALUE:
            raise errors.invalid_parameter("metadata", (
                f"`metadata` keys are at most {MAX_METADATA_KEY} characters and values at most {MAX_METADATA_VALUE}. "
                f"Given: the key {key[:80]!r}"))


def _tools(req: ResponsesRequest) -> list[dict] | None:
    if req.tools is None:
        return None
    tools = []
    for i, t in enumerate(req.tools):
        if t.type != "function":
            raise errors.invalid_parameter(f"tools.{i}.type", (
                f"`tools.{i}.type`: only function tools are supported by this server (no built-in tools). "
                f"Given: {t.type!r}"))
        if t.name is None:
            raise errors.invalid_parameter(f"tools.{i}.name", f"`tools.{i}.name` is required")
        for key, value in (t.model_extra or {}).items():
            if value not in (None, False, [], {}) and not (key == "allowed_callers" and value == ["direct"]):
                raise errors.unsupported_parameter(f"tools.{i}.{key}")
        tools.append({"type": "function", "function": t.model_dump(include={"name", "description", "parameters",
                                                                            "strict"}, exclude_none=True)})
    return tools


def _tool_choice(req: ResponsesRequest):
    choice = req.tool_choice
    if choice is None or isinstance(choice, str):
        return choice
    if choice.type != "function":
        raise errors.invalid_parameter("tool_choice", (
            f"`tool_choice` takes none, auto, required or a function ({{\"type\": \"function\", \"name\": ...}}). "
            f"Given type {choice.type!r}"))
    if not choice.name:
        raise errors.invalid_parameter("tool_choice.name", "`tool_choice.name` is required for a function")
    return {"type": "function", "function": {"name": choice.name}}


def _response_format(req: ResponsesRequest) -> dict | None:
    fmt = req.text.format if req.text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "json_object"}
    if fmt.schema_ is None:
        raise errors.invalid_parameter("text.format.schema", "`text.format` of type json_schema needs `schema`")
    return {"type": "json_schema", "json_schema": {"name": fmt.name, "description": fmt.description,
                                                   "schema": fmt.schema_, "strict": fmt.strict}}


def chat_request(req: ResponsesRequest, messages: list[dict]) -> ChatCompletionRequest:
    extra = req.model_extra or {}
    body = {"model": req.model, "messages": messages, "max_completion_tokens": req.max_output_tokens,
            "temperature": req.temperature, "top_p": req.top_p, "tools": _tools(req),
            "tool_choice": _tool_choice(req), "parallel_tool_calls": req.parallel_tool_calls,
            "response_format": _response_format(req), "user": req.user,
            **{k: extra[k] for k in EXTENSIONS if k in extra}}
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as e:  # only a pass-through extension can be out of range here
        first = e.errors(include_url=False)[0]
        param = ".".join(str(p) for p in first["loc"])
        raise errors.invalid_parameter(param, f"`{param}`: {first['msg']}. Given: {first.get('input')!r:.80}") from None


def settings(req: ResponsesRequest) -> dict:
    """The request's settings, with their defaults, as the Response object shows them."""
    fmt = req.text.format if req.text is not None else None
    if fmt is None or fmt.type != "json_schema":
        text_format = {"type": fmt.type if fmt is not None else "text"}
    else:
        text_format = fmt.model_dump(by_alias=True, exclude_none=True)
    tool_choice = req.tool_choice if req.tool_choice is None or isinstance(req.tool_choice, str) else \
        req.tool_choice.model_dump(exclude_none=True)
    return {"instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
            "metadata": req.metadata or {}, "parallel_tool_calls": req.parallel_tool_calls is not False,
            "previous_response_id": req.previous_response_id, "service_tier": "default", "store": req.store,
            "temperature": 1.0 if req.temperature is None else req.temperature, "text": {"format": text_format},
            "tool_choice": tool_choice or "auto",
            "tools": [t.model_dump(exclude_none=True) for t in req.tools or ()],
            "top_p": 1.0 if req.top_p is None else req.top_p, "truncation": "disabled", "user": req.user,
            "safety_identifier": req.safety_identifier}


def in_responses_terms(err: RequestError) -> RequestError:
    """An error from the chat checks, naming the Responses parameters instead of chat's."""
    param, message = err.param, err.message
    for old, new in RENAMED.items():
        if param is not None and (param == old or param.startswith(old + ".")):
            param = new  # messages.3... -> input: the chat message index is not the input item's
        message = message.replace(f"`{old}`", f"`{new}`").replace(f"`{old}[", f"`{new}[")
    if (param, message) == (err.param, err.message):
        return err
    return errors.with_param(err, param, message)


def prepare_response(req: ResponsesRequest, model: ServedModel, previous: StoredResponse | None
                     ) -> PreparedResponse:
    """Check, translate, render and tokenize (in a worker thread: Frontend.prepare_with)."""
    _refuse_unsupported(req)
    history = previous.conversation if previous is not None else []
    items = input_items(req.input)
    messages, num_chars = conversation_messages(history, items, req.instructions)
    chat = chat_request(req, messages)
    try:
        check_prompt_size(chat, model, chat=True)
        gen = validate_chat(chat, model)
    except RequestError as e:
        raise in_responses_terms(e) from None
    context_chars = (previous.num_chars if previous is not None else 0) + num_chars
    return PreparedResponse(gen, history + items, context_chars, settings(req))
