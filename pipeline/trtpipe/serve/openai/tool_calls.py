"""Tool calling: the request's tools -> a plan (and for `required` / a named function, a grammar), and each
choice's text -> content, reasoning and tool-call deltas in OpenAI's streamed shape.

- `auto`: unconstrained; the parser the chat template implies (tool_parsers.py) takes the calls out of the
  text, and text that may be markup is held back, so markup never reaches `content`.
- `required`: the output is forced (json_schema guide) to a compact array `[{"name": ..., "parameters": ...}]`
  over the given tools, at least one call (exactly one with `parallel_tool_calls: false`).
- a named function: the output is forced to that function's `parameters` schema: it *is* the arguments.
- `none`: the tools are not shown to the template and nothing is parsed.
NOTE: as vLLM, the forced forms do not use the model's own call markup: a JSON guide works on every engine
(TensorRT-LLM's C++ backend takes json_schema, not Lark), and the arguments always parse and match.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator

from trtpipe.serve import errors
from trtpipe.serve.openai.choice_stream import ChoiceDone, LogprobEntries, TextDelta
from trtpipe.serve.openai.reasoning import ReasoningSplitter
from trtpipe.serve.openai.structured_outputs import Guide, schema_text
from trtpipe.serve.openai.tool_parsers import ForcedCallStream


class ToolCallDelta:
    """A call's header (`name` set, arguments "") or a piece of its arguments (`name` None)."""

    __slots__ = ("index", "call_index", "call_id", "name", "arguments", "logprobs")

    def __init__(self, index: int, call_index: int, call_id: str | None, name: str | None, arguments: str,
                 logprobs: LogprobEntries | None = None):
        self.index, self.call_index, self.call_id, self.name = index, call_index, call_id, name
        self.arguments, self.logprobs = arguments, logprobs


class ReasoningDelta:
    __slots__ = ("index", "text", "logprobs")

    def __init__(self, index: int, text: str, logprobs: LogprobEntries | None = None):
        self.index, self.text, self.logprobs = index, text, logprobs


@dataclass(frozen=True)
class ToolPlan:
    mode: str  # "auto", "required" or "named"
    names: tuple[str, ...]
    parser: object  # a tool_parsers parser (auto)
    parallel: bool = True
    named: str | None = None


def _parameters(fn) -> dict:
    return fn.parameters if fn.parameters is not None else {"type": "object", "properties": {}}


def plan_tools(req, parser) -> tuple[ToolPlan | None, Guide | None, list[dict] | None]:
    """-> (plan, the guide for forced calls, the tools as the chat template receives them)."""
    choice = req.tool_choice
    if not req.tools:
        if choice not in (None, "none", "auto"):
            raise errors.invalid_parameter("tool_choice", "`tool_choice` needs `tools`")
        return None, None, None
    if choice == "none":
        return None, None, None
    tools = {t.function.name: t.function for t in req.tools}
    if len(tools) != len(req.tools):
        raise errors.invalid_parameter("tools", "`tools` function names must be unique")
    template_tools = [{"type": "function", "function": t.function.model_dump(exclude_none=True)} for t in req.tools]
    parallel = req.parallel_tool_calls is not False
    if choice in (None, "auto"):
        return ToolPlan("auto", tuple(tools), parser, parallel), None, template_tools
    if choice == "required":
        items = [{"type": "object", "additionalProperties": False, "required": ["name", "parameters"],
                  "properties": {"name": {"const": n}, "parameters": _parameters(f)}} for n, f in tools.items()]
        schema = {"type": "array", "minItems": 1, "items": {"anyOf": items}}
        if not parallel:
            schema["maxItems"] = 1
        lenient = all(f.strict is False for f in tools.values())
        guide = Guide("json_schema", schema_text(schema, "tools", lenient), "tools")
        return ToolPlan("required", tuple(tools), parser, parallel), guide, template_tools
    name = choice.function.name
    if name not in tools:
        raise errors.invalid_parameter(
            "tool_choice", f"`tool_choice` names function {name!r}, which is not in `tools` ({sorted(tools)})")
    fn = tools[name]
    guide = Guide("json_schema", schema_text(_parameters(fn), "tools", fn.strict is False), "tools")
    return ToolPlan("named", tuple(tools), parser, False, name), guide, template_tools


def call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


@dataclass
class _Shaper:
    """One choice's state while its text is turned into content / reasoning / tool-call events."""

    index: int
    plan: ToolPlan | None
    reasoning: ReasoningSplitter | None
    text: str = ""  # content-side text so far (after reasoning is taken out)
    num_sent: int = 0  # of `text`, how much went out as content (auto)
    ids: list[str] = field(default_factory=list)
    forced: ForcedCallStream | None = None
    pending_lp: LogprobEntries | None = None

    def _lp(self) -> LogprobEntries | None:
        lp, self.pending_lp = self.pending_lp, ([] if self.pending_lp is not None else None)
        return lp or None

    def _start(self, name: str) -> ToolCallDelta:
        self.ids.append(call_id())
        return ToolCallDelta(self.index, len(self.ids) - 1, self.ids[-1], name, "", self._lp())

    def content(self, text: str) -> list:
        plan, out = self.plan, []
        if plan is None:
            return [TextDelta(self.index, text, self._lp())] if text else []
        if plan.mode == "named":
            if not self.ids:
                out.append(self._start(plan.named))
            if text:
                out.append(ToolCallDelta(self.index, 0, None, None, text, self._lp()))
            return out
        if plan.mode == "required":
            self.forced = self.forced or ForcedCallStream()
            for ev in self.forced.feed(text):
                out.append(self._start(ev[2]) if ev[0] == "start"
                           else ToolCallDelta(self.index, ev[1], None, None, ev[2], self._lp()))
            return out
        self.text += text
        hold = max(plan.parser.hold_from(self.text), self.num_sent)
        if hold > self.num_sent:
            out.append(TextDelta(self.index, self.text[self.num_sent:hold], self._lp()))
            self.num_sent = hold
        return out

    def finish(self) -> list:
        """At the end of the choice: what auto mode held back, as content or as calls."""
        if self.plan is None or self.plan.mode != "auto":
            return []
        content, calls = self.plan.parser.split(self.text)
        if not self.plan.parallel:
            calls = calls[:1]
        sent = self.text[:self.num_sent]
        rest = content[len(sent):] if content.startswith(sent) else ""
        out = [TextDelta(self.index, rest, self._lp())] if rest else []
        for c in calls:
            out.append(self._start(c.name))
            out.append(ToolCallDelta(self.index, len(self.ids) - 1, None, None, c.arguments))
        return out


async def shape_choice(events: AsyncIterator, index: int, plan: ToolPlan | None, reasoning_prompt: str | None,
                       logprobs: bool) -> AsyncIterator:
    """TextDelta/ChoiceDone of one choice -> TextDelta (content), ReasoningDelta, ToolCallDelta, ChoiceDone."""
    shaper = _Shaper(index, plan, ReasoningSplitter(reasoning_prompt) if reasoning_prompt is not None else None,
                     pending_lp=[] if logprobs else None)
    async for ev in events:
        final = type(ev) is ChoiceDone
        if shaper.pending_lp is not None and ev.logprobs:
            shaper.pending_lp.extend(ev.logprobs)
        text = "" if final else ev.text
        out = []
        if shaper.reasoning is not None:
            reasoning, text = shaper.reasoning.feed(text, final=final)
            if reasoning:
                out.append(ReasoningDelta(index, reasoning, shaper._lp()))
        out += shaper.content(text)
        if final:
            out += shaper.finish()
        for item in out:
            yield item
        if final:
            reason = "tool_calls" if shaper.ids and ev.finish_reason == "stop" else ev.finish_reason
            yield ChoiceDone(index, reason, ev.completion_tokens, ev.num_draft_tokens, ev.num_accepted_draft_tokens,
                             shaper._lp())
            return


def template_tool_calls(tool_calls) -> list[dict]:
    """An assistant turn's calls as Hugging Face templates expect them: arguments as an object, not a string."""
    out = []
    for c in tool_calls:
        try:
            args = json.loads(c.function.arguments)
        except json.JSONDecodeError:
            args = c.function.arguments
        out.append({"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": args}})
    return out
