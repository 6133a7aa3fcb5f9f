"""Which guide a request asks for (response_format, vLLM's extensions), and the 400s for the wrong ones."""

from __future__ import annotations

import json

import pytest

from trtpipe.serve.errors import RequestError
from trtpipe.serve.openai.structured_outputs import JSON_OBJECT_SCHEMA, request_guide
from trtpipe.serve.protocol import ChatCompletionRequest, CompletionRequest

MSG = [{"role": "user", "content": "hi"}]


def chat(**kw) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="m", messages=MSG, **kw)


def test_text_or_nothing_is_unconstrained():
    assert request_guide(chat()) is None
    assert request_guide(chat(response_format={"type": "text"})) is None


def test_json_object_and_json_schema_become_json_schema_guides():
    g = request_guide(chat(response_format={"type": "json_object"}))
    assert (g.guide_type, g.guide, g.param) == ("json_schema", JSON_OBJECT_SCHEMA, "response_format")
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    g = request_guide(chat(response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema,
                                                                                    "strict": True}}))
    assert json.loads(g.guide) == schema


def test_strict_false_compiles_the_schema_leniently():
    rf = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}, "strict": False}}
    assert json.loads(request_guide(chat(response_format=rf)).guide)["x-guidance"] == {"lenient": True}


@pytest.mark.parametrize("kw,guide_type,guide", [
    ({"guided_regex": "a+"}, "regex", "a+"),
    ({"guided_choice": ["yes", "no \"way\""]}, "ebnf_grammar", 'root ::= "yes" | "no \\"way\\""'),
    ({"guided_grammar": 'root ::= "x"'}, "ebnf_grammar", 'root ::= "x"'),
    ({"guided_json": {"type": "array"}}, "json_schema", '{"type": "array"}'),
    ({"structured_outputs": {"regex": "b"}}, "regex", "b"),
    ({"structured_outputs": {"json": '{"type": "string"}'}}, "json_schema", '{"type": "string"}'),
])
def test_vllm_extensions_map_onto_tensorrt_llm_guide_types(kw, guide_type, guide):
    for req in (chat(**kw), CompletionRequest(model="m", prompt="p", **kw)):
        g = request_guide(req)
        assert (g.guide_type, g.guide) == (guide_type, guide)


@pytest.mark.parametrize("kw,param", [
    ({"guided_regex": "a", "response_format": {"type": "json_object"}}, "guided_regex"),
    ({"guided_choice": ["", "a"]}, "guided_choice"),
    ({"guided_json": "{nope"}, "guided_json"),
    ({"guided_json": "[1]"}, "guided_json"),
    ({"response_format": {"type": "json_schema"}}, "response_format"),
])
def test_unusable_formats_are_400s_naming_the_parameter(kw, param):
    with pytest.raises(RequestError) as e:
        request_guide(chat(**kw))
    assert e.value.param == param and f"`{param}`" in e.value.message
