"""Tool calls out of generated text, in the format the model's chat template teaches it.

- `hermes` (Hermes, Qwen 2/2.5/3): `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, any number.
- `mistral`: `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`.
- `llama3_json` (Llama 3.1-3.3): `{"name": ..., "parameters": {...}}` as the whole message (optionally after
  `<|python_tag|>`), several separated by `;`.
The parser is picked from the template text (`parser_for_template`). `[TOOL_CALLS]` and `<|python_tag|>` are
special tokens that the detokenizer drops, so the parsers also accept the bare JSON where the marker was.

`split(text)` parses a whole message into (content, calls): the markup never stays in the content.
`hold_from(text)` says from which offset streamed text might still turn into markup: the stream holds that
part back until the end decides. `ForcedCallStream` parses the forced form (tool_choice `required`), a
compact JSON array the grammar guarantees, incrementally, so arguments stream as they are generated.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ParsedCall:
    name: str
    arguments: str  # a JSON text


def _call(obj) -> ParsedCall | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):  # some models write the arguments as a JSON string
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    return ParsedCall(obj["name"], json.dumps(args, ensure_ascii=False))


def _partial_marker_at(text: str, marker: str) -> int:
    """Where `marker`, or a prefix of it at the very end of text, begins; len(text) if nowhere."""
    i = text.find(marker)
    if i >= 0:
        return i
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return len(text) - n
    return len(text)


class HermesParser:
    name = "hermes"
    OPEN, CLOSE = "<tool_call>", "</tool_call>"
    _BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)

    def split(self, text: str) -> tuple[str, list[ParsedCall]]:
        if self.OPEN not in text:
            return text, []
        calls = []
        for m in self._BLOCK.finditer(text):
            try:
                call = _call(json.loads(m.group(1).strip()))
            except json.JSONDecodeError:
                call = None
            if call is not None:
                calls.append(call)
        # Markup never leaks: text inside a block that does not parse (cut by max_tokens) is dropped too.
        content = self._BLOCK.sub("", text).strip()
        return content, calls

    def hold_from(self, text: str) -> int:
        return _partial_marker_at(text, self.OPEN)


class MistralParser:
    name = "mistral"
    MARKER = "[TOOL_CALLS]"

    def split(self, text: str) -> tuple[str, list[ParsedCall]]:
        i = text.find(self.MARKER)
        head, body = (text[:i], text[i + len(self.MARKER):]) if i >= 0 else ("", text)
        if i < 0 and not body.lstrip().startswith("["):
            return text, []
        try:
            items, _ = json.JSONDecoder().raw_decode(body.strip())
        except json.JSONDecodeError:
            return (head.strip(), []) if i >= 0 else (text, [])
        items = items if isinstance(items, list) else [items]
        calls = [c for c in (_call(x) for x in items) if c is not None]
        if not calls and i < 0:
            return text, []
        return head.strip(), calls

    def hold_from(self, text: str) -> int:
        if text.lstrip().startswith("[") or not text.strip():
            return 0  # a bare array where the (dropped) marker was: wait for the end
        return _partial_marker_at(text, self.MARKER)


class Llama3JsonParser:
    name = "llama3_json"
    MARKER = "<|python_tag|>"

    def split(self, text: str) -> tuple[str, list[ParsedCall]]:
        body = text.split(self.MARKER, 1)[1] if self.MARKER in text else text
        body = body.strip()
        if not body.startswith("{"):
            return text, []
        calls, decoder, pos = [], json.JSONDecoder(), 0
        while pos < len(body):
            try:
                obj, end = decoder.raw_decode(body, pos)
            except json.JSONDecodeError:
                return text, []
            call = _call(obj)
            if call is None:
                return text, []
            calls.append(call)
            pos = end
            while pos < len(body) and body[pos] in " \n\t;":
                pos += 1
        return "", calls

    def hold_from(self, text: str) -> int:
        # A message that opens with "{" may be a call: only the end decides.
        stripped = text.lstrip()
        return 0 if not stripped or stripped.startswith("{") or self.MARKER in text else len(text)


PARSERS = {p.name: p for p in (HermesParser(), MistralParser(), Llama3JsonParser())}


def parser_for_template(template: str | None):
    """The format the template teaches: its own markers first, then Llama 3's headers; Hermes otherwise."""
    t = template or ""
    if "<tool_call>" in t:
        return PARSERS["hermes"]
    if "[TOOL_CALLS]" in t:
        return PARSERS["mistral"]
    if "<|python_tag|>" in t or "<|start_header_id|>" in t:
        return PARSERS["llama3_json"]
    return PARSERS["hermes"]


class ForcedCallStream:
    """Incremental parse of `[{"name":"f","parameters":{...}},...]` (compact, keys in this order: the grammar
    guarantees it). `feed(text)` -> events ("start", index, name) and ("args", index, text)."""

    _HEAD = re.compile(r'\s*[\[,]?\s*\{"name":"([A-Za-z0-9_-]+)","parameters":')

    def __init__(self) -> None:
        self._buf, self._pos, self._state = "", 0, "head"
        self._depth, self._in_string, self._escaped = 0, False, False
        self.num_calls = 0

    def feed(self, text: str) -> list[tuple]:
        self._buf += text
        events: list[tuple] = []
        while True:
            if self._state == "head":
                m = self._HEAD.match(self._buf, self._pos)
                if m is None:
                    return events
                events.append(("start", self.num_calls, m.group(1)))
                self.num_calls += 1
                self._pos, self._state, self._depth = m.end(), "args", 0
            elif self._state == "args":
                start = self._pos
                done = self._scan_value()
                if self._pos > start:
                    events.append(("args", self.num_calls - 1, self._buf[start:self._pos]))
                if not done:
                    return events
                self._state = "tail"
            else:  # the call object's closing brace
                if self._pos >= len(self._buf):
                    return events
                if self._buf[self._pos] == "}":
                    self._pos += 1
                self._state = "head"

    def _scan_value(self) -> bool:
        """Advance over the arguments object; True once it is closed."""
        buf = self._buf
        while self._pos < len(buf):
            c = buf[self._pos]
            self._pos += 1
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif c == "\\":
                    self._escaped = True
                elif c == '"':
                    self._in_string = False
            elif c == '"':
                self._in_string = True
            elif c in "{[":
                self._depth += 1
            elif c in "}]":
                self._depth -= 1
                if self._depth == 0:
                    return True
        return False
