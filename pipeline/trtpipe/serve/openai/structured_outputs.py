"""Structured outputs: the request's format -> one guide for the engine, compiled here first so a bad one is a 400.

Sources, at most one per request:
- `response_format`: `text` (none), `json_object` (any JSON object), `json_schema` (its `schema`; `strict`).
- vLLM's extensions: `guided_json`, `guided_regex`, `guided_choice`, `guided_grammar` (GBNF), and the newer
  `structured_outputs` object (`json`, `regex`, `choice`, `grammar`, `structural_tag`).
- tools (`tool_choice: required` or a named function): serve/openai/tool_calls.py builds that guide.

The guide is sent as TensorRT-LLM's `guided_decoding_guide_type` / `guided_decoding_guide`, so the same
request constrains the reference engine and a TensorRT-LLM engine built with guided decoding.
NOTE: `strict: false` compiles the schema leniently (keywords the grammar cannot enforce are ignored);
`strict: true`, and a schema without `strict`, refuse such a schema with a 400 rather than ignore part of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from trtpipe.engine.grammar import GrammarError
from trtpipe.serve import errors
from trtpipe.serve.openai.served_models import ServedModel

JSON_OBJECT_SCHEMA = '{"type": "object"}'


@dataclass(frozen=True)
class Guide:
    """What the engine is constrained by, in TensorRT-LLM's terms, and the parameter it came from."""

    guide_type: str
    guide: str
    param: str


def schema_text(schema, param: str, lenient: bool = False) -> str:
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as e:
            raise errors.invalid_parameter(param, f"`{param}` is not valid JSON: {e}") from None
    if not isinstance(schema, dict):
        raise errors.invalid_parameter(param, f"`{param}` must be a JSON schema object. Given: {type(schema).__name__}")
    if lenient:
        schema = {**schema, "x-guidance": {**schema.get("x-guidance", {}), "lenient": True}}
    return json.dumps(schema)


def choice_grammar(choices, param: str) -> str:
    """A list of strings -> a GBNF grammar that is exactly one of them."""
    if not isinstance(choices, list) or not choices or not all(isinstance(c, str) and c for c in choices):
        raise errors.invalid_parameter(param, f"`{param}` must be a non-empty list of non-empty strings")
    return "root ::= " + " | ".join(json.dumps(c, ensure_ascii=False) for c in choices)


def _response_format(rf) -> Guide | None:
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        return Guide("json_schema", JSON_OBJECT_SCHEMA, "response_format")
    if rf.type == "json_schema":
        spec = rf.json_schema
        if spec is None or spec.schema_ is None:
            raise errors.invalid_parameter("response_format",
                                           "`response_format` of type json_schema needs `json_schema.schema`")
        lenient = spec.strict is False
        return Guide("json_schema", schema_text(spec.schema_, "response_format", lenient), "response_format")
    raise errors.invalid_parameter(
        "response_format", f"`response_format.type` must be one of text, json_object, json_schema. Given: {rf.type!r}")


def _vllm_extensions(req) -> list[Guide]:
    found = []
    if req.guided_json is not None:
        found.append(Guide("json_schema", schema_text(req.guided_json, "guided_json"), "guided_json"))
    if req.guided_regex is not None:
        found.append(Guide("regex", req.guided_regex, "guided_regex"))
    if req.guided_choice is not None:
        found.append(Guide("ebnf_grammar", choice_grammar(req.guided_choice, "guided_choice"), "guided_choice"))
    if req.guided_grammar is not None:
        found.append(Guide("ebnf_grammar", req.guided_grammar, "guided_grammar"))
    so = req.structured_outputs
    if so is not None:
        for key, kind in (("json", "json_schema"), ("regex", "regex"), ("choice", "ebnf_grammar"),
                          ("grammar", "ebnf_grammar"), ("structural_tag", "structural_tag")):
            value = getattr(so, "json_" if key == "json" else key)
            if value is None:
                continue
            param = f"structured_outputs.{key}"
            if key == "json":
                value = schema_text(value, param)
            elif key == "choice":
                value = choice_grammar(value, param)
            elif not isinstance(value, str):
                value = json.dumps(value)
            found.append(Guide(kind, value, param))
    return found


def request_guide(req) -> Guide | None:
    """The one guide a request asks for, or None; two different sources are a 400."""
    found = _vllm_extensions(req)
    rf = _response_format(getattr(req, "response_format", None))
    if rf is not None:
        found.insert(0, rf)
    if len(found) > 1:
        raise errors.invalid_parameter(found[1].param,
                                       f"use one of `{found[0].param}` and `{found[1].param}`, not both")
    return found[0] if found else None


def require_guided_decoding(guide: Guide, model: ServedModel, param: str | None = None) -> None:
    """A guide goes only to an engine whose spec says it enforces guides; otherwise the output would ignore it."""
    if model.spec.guided_decoding:
        return
    param = param or guide.param
    fix = ("use `tool_choice: auto`" if param == "tool_choice" else f"send the request without `{param}`")
    raise errors.invalid_parameter(param, (
        f"`{param}` needs guided decoding, which this model was published without (serving.guided_decoding: none; "
        f"backend {model.spec.backend}): {fix}, or republish the model with guided decoding on"))


def check_guide(guide: Guide, model: ServedModel) -> None:
    """Compile the guide against the model's tokenizer (cached), so a guide that cannot compile is a 400 now
    rather than an engine error later."""
    try:
        model.text.grammars().compile(guide.guide_type, guide.guide)
    except GrammarError as e:
        raise errors.invalid_parameter(guide.param, f"`{guide.param}` cannot be enforced: {e}") from None
