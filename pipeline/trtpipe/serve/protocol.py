"""OpenAI wire types: requests, responses, stream chunks, and the error envelope.

The request models validate types and ranges (a 400 naming the parameter); cross-field and model-limit checks
live in openai/validation.py. The response models document the API (OpenAPI) and are what the unit tests validate
the frontend's hand-built JSON against; the hot path writes the same shapes without building these objects.
"""

from __future__ import annotations

import time
import uuid
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _NullMeansDefault(BaseModel):
    """A request model whose fields take `null` as "the default": the OpenAI API documents most optional fields
    as nullable (`n`, `presence_penalty`, `logprobs`, `stream`, `echo`, ...), and clients send them so."""

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data):
        if isinstance(data, dict):
            fields = cls.model_fields
            return {k: v for k, v in data.items()
                    if v is not None or (k in fields and fields[k].default is None and not fields[k].is_required())}
        return data


class StreamOptions(_NullMeansDefault):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = Field(False, description="send a last chunk with the usage of the whole request")


class JsonSchemaFormat(_NullMeansDefault):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    name: str = Field("response", max_length=64)
    description: str | None = None
    schema_: dict | None = Field(None, alias="schema", description="the JSON schema the output must match")
    strict: bool | None = Field(None, description="false: keywords the grammar cannot enforce are ignored")


class ResponseFormat(_NullMeansDefault):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StructuredOutputs(_NullMeansDefault):
    """vLLM's `structured_outputs` (one of the fields)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    json_: dict | str | None = Field(None, alias="json")
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None
    structural_tag: dict | str | None = None


class _Request(_NullMeansDefault):
    # NOTE: unknown fields are ignored, as vLLM and TGI do: clients send vendor extras through extra_body. They are
    # kept (extra="allow") so that the extensions of vLLM's that this server does not implement are refused by name
    # (openai/validation.py UNSUPPORTED_EXTENSIONS) instead of being silently ignored.
    model_config = ConfigDict(extra="allow")

    model: str = Field(description="a model id from GET /v1/models")
    max_tokens: int | None = Field(None, ge=1, description="at most this many tokens; default and cap are per model")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="0 is greedy")
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0, description="extension: sample from the k most likely tokens; 0 = off")
    min_tokens: int = Field(0, ge=0, description="extension: no end-of-sequence before this many tokens")
    ignore_eos: bool = Field(False, description="extension (vLLM): never stop at end-of-sequence")
    seed: int | None = Field(None, ge=0, lt=2**63)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0, description="extension (vLLM): 1 = off")
    n: int = Field(1, ge=1, le=16, description="number of choices")
    stop: str | list[str] | None = Field(None, description="up to 4 strings; the text ends before the first one")
    include_stop_str_in_output: bool = Field(False, description="extension (vLLM): keep the stop string that "
                                                                "ended the text")
    stop_token_ids: list[int] | None = Field(None, max_length=64, description="extension (vLLM): token ids that "
                                                                               "end the text (kept in it)")
    priority: int = Field(0, ge=-(2**31), lt=2**31, description="extension (vLLM): admission order while requests "
                                                                "wait; lower is served first, ties in arrival order")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)
    logit_bias: dict[str, float] | None = Field(None, description="not supported: must be empty")
    response_format: ResponseFormat | None = Field(None, description="text, json_object or json_schema, enforced")
    guided_json: dict | str | None = Field(None, description="extension (vLLM): a JSON schema, enforced")
    guided_regex: str | None = Field(None, description="extension (vLLM): a regular expression, enforced")
    guided_choice: list[str] | None = Field(None, description="extension (vLLM): exactly one of these strings")
    guided_grammar: str | None = Field(None, description="extension (vLLM): a GBNF grammar (root ::= ...)")
    structured_outputs: StructuredOutputs | None = Field(None, description="extension (vLLM): one guide")


class TextPart(_NullMeansDefault):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class FunctionCall(_NullMeansDefault):
    model_config = ConfigDict(extra="ignore")
    name: str
    arguments: str = Field(description="the arguments as a JSON text")


class ToolCall(_NullMeansDefault):
    model_config = ConfigDict(extra="ignore")
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_NullMeansDefault):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = Field(None, description="an assistant turn's calls")
    tool_call_id: str | None = Field(None, description="the call a tool message answers")


class FunctionDefinition(_NullMeansDefault):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict | None = Field(None, description="a JSON schema of the arguments object")
    strict: bool | None = None


class Tool(_NullMeansDefault):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_NullMeansDefault):
    name: str


class NamedToolChoice(_NullMeansDefault):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"]
    function: NamedFunction


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="takes precedence over max_tokens")
    logprobs: bool = Field(False, description="log-probabilities of the sampled tokens")
    top_logprobs: int | None = Field(None, ge=0, le=20, description="0-20 most likely alternatives per token "
                                                                   "(reference engine)")
    tools: list[Tool] | None = Field(None, max_length=128, description="functions the model may call")
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = Field(
        None, description="auto (default with tools), none, required, or one named function; required and named "
                          "are enforced by a grammar")
    parallel_tool_calls: bool | None = Field(None, description="false: at most one call per turn")
    chat_template_kwargs: dict | None = Field(None, description="extension (vLLM): extra variables for the chat "
                                                                "template (e.g. enable_thinking)")


class CompletionRequest(_Request):
    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        description="a string, a list of strings, a list of token ids, or a list of token-id lists")
    echo: bool = Field(False, description="prepend the prompt to the text")
    logprobs: int | None = Field(None, ge=0, le=20, description="log-probs of the sampled tokens and of this many "
                                                                "alternatives (above 0: reference engine)")
    suffix: str | None = Field(None, description="not supported")
    best_of: int | None = Field(None, ge=1, description="only equal to n")


# --- /v1/responses requests --------------------------------------------------------------------------------
# The item shapes (`input` items, content parts) are checked by openai/responses_input.py, which names the exact
# place (`input.2.content.0.type`); here they are plain JSON objects.


class ResponsesTextFormat(_NullMeansDefault):
    """`text.format`: the Responses form of `response_format` (json_schema flat: name, schema, strict here)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    type: Literal["text", "json_object", "json_schema"]
    name: str = Field("response", max_length=64)
    description: str | None = None
    schema_: dict | None = Field(None, alias="schema", description="json_schema: the schema the output matches")
    strict: bool | None = None


class ResponsesText(_NullMeansDefault):
    model_config = ConfigDict(extra="forbid")
    format: ResponsesTextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = Field(None, description="not supported")


class ResponsesFunctionTool(_NullMeansDefault):
    """The Responses API's flat function tool (no `function` wrapper). Other tool types are refused by name."""

    model_config = ConfigDict(extra="allow")
    type: str
    name: str | None = Field(None, pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict | None = Field(None, description="a JSON schema of the arguments object")
    strict: bool | None = None


class ResponsesToolChoice(_NullMeansDefault):
    model_config = ConfigDict(extra="allow")
    type: str
    name: str | None = None


class ResponsesRequest(_NullMeansDefault):
    # NOTE: as for chat, unknown fields are kept (extra="allow"): the Responses API's own fields this server does
    # not implement and the Chat Completions fields that do not belong here are refused by name
    # (openai/responses.py), and trtpipe's sampling extensions (top_k, seed, ignore_eos, ...) pass through.
    model_config = ConfigDict(extra="allow")

    model: str = Field(description="a model id from GET /v1/models")
    input: str | list[dict] = Field(description="text, or a list of items: messages (input_text parts), "
                                                "function_call and function_call_output")
    instructions: str | None = Field(None, description="a system message before `input`; not carried over by "
                                                       "`previous_response_id`")
    max_output_tokens: int | None = Field(None, ge=1, description="at most this many tokens; default and cap per "
                                                                  "model")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="0 is greedy")
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stream: bool = False
    store: bool = Field(True, description="keep the response in this process's bounded in-memory store, for GET and "
                                          "`previous_response_id`")
    previous_response_id: str | None = Field(None, description="continue a stored response's conversation")
    tools: list[ResponsesFunctionTool] | None = Field(None, max_length=128, description="function tools")
    tool_choice: Literal["none", "auto", "required"] | ResponsesToolChoice | None = None
    parallel_tool_calls: bool | None = Field(None, description="false: at most one call per turn")
    text: ResponsesText | None = Field(None, description="`format`: text, json_object or json_schema, enforced")
    metadata: dict[str, str] | None = Field(None, max_length=16, description="up to 16 string pairs, stored and "
                                                                             "returned")
    user: str | None = Field(None, max_length=256)
    safety_identifier: str | None = Field(None, max_length=256)


# --- responses -------------------------------------------------------------------------------------------


class SpeculationUsage(BaseModel):
    num_draft_tokens: int = Field(description="tokens proposed by the draft model")
    num_accepted_tokens: int = Field(description="draft tokens the target model accepted")
    acceptance_rate: float | None


class PromptTokensDetails(BaseModel):
    cached_tokens: int = Field(description="prompt tokens the engine's prefix cache held (engines that report it)")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    speculation: SpeculationUsage | None = Field(None, description="extension: draft-target speculation, if used")


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[dict] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None = None


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict | None] | None
    text_offset: list[int]


FinishReason = Literal["stop", "length", "tool_calls"]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None
    reasoning_content: str | None = Field(None, description="extension: the <think> text, for templates with it")


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str | None
    choices: list[ChatChoice]
    usage: Usage


class ToolCallChunk(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: dict = Field(description="`name` (first delta of a call) and a piece of `arguments`")


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallChunk] | None = None
    reasoning_content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason | None


class ChatCompletionChunk(BaseModel):
    """One SSE event. The first chunk of a choice carries the role and its first text; none is empty."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str | None
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: FinishReason | None


class CompletionResponse(BaseModel):
    """Non-streamed, and (with finish_reason null until the end) each streamed chunk."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    system_fingerprint: str | None
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "trtpipe"
    root: str | None = None
    max_model_len: int | None = None
    trtpipe: dict | None = Field(None, description="the build manifest summary of the live version")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


AnyRequest = Union[ChatCompletionRequest, CompletionRequest]


def completion_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())
