"""Tool calls out of text per template format, the forced-call stream, and <think> separation."""

from __future__ import annotations

import json
import random

import pytest

from trtpipe.serve.openai.reasoning import ReasoningSplitter, template_has_reasoning
from trtpipe.serve.openai.tool_parsers import PARSERS, ForcedCallStream, ParsedCall, parser_for_template

WEATHER = ParsedCall("get_weather", '{"city": "Paris"}')


@pytest.mark.parametrize("template,name", [
    ("{% for t in tools %}<tool_call>{{ t | tojson }}</tool_call>{% endfor %}", "hermes"),
    ("[AVAILABLE_TOOLS]{{ tools }}[/AVAILABLE_TOOLS] ... [TOOL_CALLS]", "mistral"),
    ("<|start_header_id|>{{ m.role }}<|end_header_id|> <|python_tag|>", "llama3_json"),
    ("<|start_header_id|>{{ m.role }}<|end_header_id|>", "llama3_json"),
    ("{{ messages }}", "hermes"),
    (None, "hermes"),
])
def test_the_parser_is_chosen_by_the_templates_markup(template, name):
    assert parser_for_template(template).name == name


@pytest.mark.parametrize("parser,text,content,calls", [
    ("hermes", 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
     "Let me check.", [WEATHER]),
    ("hermes", '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>\n'
               '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>', "", [WEATHER] * 2),
    ("hermes", 'Hi <tool_call>{"name": "get_weather", "argu', "Hi", []),  # cut off: no call, no markup left
    ("hermes", "no calls here", "no calls here", []),
    ("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]', "", [WEATHER]),
    ("mistral", '[{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}]', "", [WEATHER]),
    ("mistral", "[1, 2] is a list", "[1, 2] is a list", []),
    ("llama3_json", '{"name": "get_weather", "parameters": {"city": "Paris"}}', "", [WEATHER]),
    ("llama3_json", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; '
                    '{"name": "get_weather", "parameters": {"city": "Paris"}}', "", [WEATHER] * 2),
    ("llama3_json", '{"answer": 42}', '{"answer": 42}', []),
    ("llama3_json", "The weather is nice.", "The weather is nice.", []),
])
def test_split_takes_the_calls_out_and_leaves_no_markup_in_content(parser, text, content, calls):
    got_content, got_calls = PARSERS[parser].split(text)
    assert got_content == content
    assert [(c.name, json.loads(c.arguments)) for c in got_calls] == [(c.name, json.loads(c.arguments)) for c in calls]


def test_hold_from_keeps_back_only_what_may_become_markup():
    hermes = PARSERS["hermes"]
    assert hermes.hold_from("Sure, ") == 6
    assert hermes.hold_from("Sure, <tool_") == 6
    assert hermes.hold_from("a < b") == 5
    assert PARSERS["llama3_json"].hold_from(' {"na') == 0
    assert PARSERS["llama3_json"].hold_from("Hello") == 5
    assert PARSERS["mistral"].hold_from("[") == 0 and PARSERS["mistral"].hold_from("x [TOOL_") == 2


def test_the_forced_call_stream_gives_the_same_calls_however_the_text_is_split():
    calls = [{"name": "get_weather", "parameters": {"city": "P\"a}r[is", "n": [1, {"x": "]"}]}},
             {"name": "get_time", "parameters": {}}]
    text = json.dumps(calls, separators=(",", ":"))
    rng = random.Random(0)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 20)))
        stream, events = ForcedCallStream(), []
        for a, b in zip([0] + cuts, cuts + [len(text)]):
            events += stream.feed(text[a:b])
        names = [e[2] for e in events if e[0] == "start"]
        args = ["".join(e[2] for e in events if e[0] == "args" and e[1] == i) for i in range(len(names))]
        assert names == ["get_weather", "get_time"]
        assert [json.loads(a) for a in args] == [c["parameters"] for c in calls]


def test_reasoning_is_split_from_content_however_the_text_is_split():
    text = "<think>Let me think about <b> and </th ink>.</think>\n\nThe answer is 4."
    rng = random.Random(1)
    for _ in range(30):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 12)))
        splitter, reasoning, content = ReasoningSplitter(prompt="<|assistant|>"), "", ""
        pieces = [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]
        for i, p in enumerate(pieces):
            r, c = splitter.feed(p, final=i == len(pieces) - 1)
            reasoning, content = reasoning + r, content + c
        assert (reasoning, content) == ("Let me think about <b> and </th ink>.", "The answer is 4.")


def test_a_prompt_that_opens_the_think_block_starts_in_reasoning():
    splitter = ReasoningSplitter(prompt="<|im_start|>assistant\n<think>\n")
    assert splitter.feed("step one</think>done", final=True) == ("step one", "done")
    assert ReasoningSplitter(prompt="x").feed("plain", final=True) == ("", "plain")
    assert template_has_reasoning("{% if t %}<think>{{ r }}</think>{% endif %}")
    assert not template_has_reasoning("<|start_header_id|>")
