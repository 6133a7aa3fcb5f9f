"""/v1/responses `input` items -> the chat messages the chat template renders, or a 400 naming the exact place.

Items (the Responses API's shapes; a plain string `input` is one user message):
- `message` (`type` may be left out): role `user`, `system`, `developer` or `assistant`; content a string or a list
  of `input_text` parts (an assistant turn also takes `output_text` parts: a previous response's output sent back).
- `function_call` (`call_id`, `name`, `arguments`): the assistant's call; consecutive calls, and the assistant
  text just before them, make one assistant turn with `tool_calls`, as in Chat Completions.
- `function_call_output` (`call_id`, `output`): a `tool` message; its `call_id` must answer a call made earlier
  in the conversation.
- `reasoning`: accepted, so that a previous response's output can be sent back as it is, and left out of the
  prompt. NOTE: chat templates drop earlier turns' reasoning too (and the chat path ignores `reasoning_content`
  in assistant messages).
Everything else (images, files, audio, item references, built-in tool calls) is refused by name. Items carry
`id` and `status` when they are a response's output sent back; both are accepted and play no part in the prompt.
"""

from __future__ import annotations

from trtpipe.serve import errors

ROLES = ("user", "system", "developer", "assistant")
# Keys an item (or part) may carry besides those it is converted from: metadata of an output sent back.
_ITEM_KEYS = {
    "message": {"type", "role", "content", "id", "status"},
    "function_call": {"type", "call_id", "name", "arguments", "id", "status"},
    "function_call_output": {"type", "call_id", "output", "id", "status"},
    "reasoning": {"type", "id", "summary", "content", "encrypted_content", "status"},
}
_PART_KEYS = {"type", "text", "annotations", "logprobs"}


def input_items(value: str | list[dict]) -> list[dict]:
    """`input` as a list of items (a string is one user message)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return value


def _refuse_extra_keys(obj: dict, allowed: set[str], where: str) -> None:
    for key, value in obj.items():
        if key not in allowed and value not in (None, False, [], {}):
            raise errors.unsupported_parameter(f"{where}.{key}")


def _text(value, where: str, part_types: tuple[str, ...]) -> tuple[str, int]:
    """A string, or a list of text parts -> (their text joined, its length)."""
    if isinstance(value, str):
        return value, len(value)
    if not isinstance(value, list):
        raise errors.invalid_parameter(where, f"`{where}` must be a string or a list of {part_types[0]} parts")
    texts = []
    for j, part in enumerate(value):
        at = f"{where}.{j}"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in part_types:
            raise errors.invalid_parameter(f"{at}.type", f"`{at}.type`: only {' and '.join(part_types)} parts are "
                                                         f"supported by this server. Given: {kind!r}")
        if not isinstance(part.get("text"), str):
            raise errors.invalid_parameter(f"{at}.text", f"`{at}.text` must be a string")
        _refuse_extra_keys(part, _PART_KEYS, at)
        texts.append(part["text"])
    text = "".join(texts)
    return text, len(text)


def _string(item: dict, key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or (key != "arguments" and not value):
        raise errors.invalid_parameter(f"{where}.{key}", f"`{where}.{key}` must be a non-empty string")
    return value


def _message(item: dict, where: str) -> tuple[dict, int]:
    role = item.get("role")
    if role not in ROLES:
        raise errors.invalid_parameter(f"{where}.role", f"`{where}.role` must be one of {', '.join(ROLES)}. "
                                                        f"Given: {role!r}")
    parts = ("output_text", "input_text") if role == "assistant" else ("input_text",)
    text, size = _text(item.get("content"), f"{where}.content", parts)
    return {"role": role, "content": text}, size


def _tool_call(item: dict, where: str) -> tuple[dict, int]:
    name, arguments = _string(item, "name", where), _string(item, "arguments", where)
    call_id = _string(item, "call_id", where)
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return call, len(name) + len(arguments) + len(call_id)


class Conversation:
    """The messages built so far, and the calls they hold (a function_call_output must answer one of them)."""

    def __init__(self, instructions: str | None):
        self.messages: list[dict] = [{"role": "system", "content": instructions}] if instructions else []
        self.call_ids: set[str] = set()
        self.num_chars = 0

    def add(self, item: dict, where: str) -> None:
        kind = item.get("type", "message" if "role" in item else None)
        if kind not in _ITEM_KEYS:
            raise errors.invalid_parameter(f"{where}.type", (
                f"`{where}.type`: this server takes message, function_call, function_call_output and reasoning "
                f"items. Given: {kind!r}"))
        _refuse_extra_keys(item, _ITEM_KEYS[kind], where)
        if kind == "message":
            message, size = _message(item, where)
            self.messages.append(message)
        elif kind == "function_call":
            call, size = _tool_call(item, where)
            self.call_ids.add(call["id"])
            last = self.messages[-1] if self.messages else None
            if last is not None and last["role"] == "assistant":  # one assistant turn: its text and its calls
                last.setdefault("tool_calls", []).append(call)
            else:
                self.messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id = _string(item, "call_id", where)
            if call_id not in self.call_ids:
                raise errors.invalid_parameter(f"{where}.call_id", (
                    f"`{where}.call_id`: no function_call with call_id {call_id!r} comes before this output in the "
                    "conversation. Send the function_call item first (or continue with `previous_response_id`)"))
            output, size = _text(item.get("output"), f"{where}.output", ("input_text",))
            self.messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
        else:
            size = 0  # reasoning: see the module docstring
        self.num_chars += size


def conversation_messages(history: list[dict], items: list[dict], instructions: str | None
                          ) -> tuple[list[dict], int]:
    """The stored conversation (a previous response's, already checked) and this request's items -> the chat
    messages, and how many characters of text this request's items add."""
    conv = Conversation(instructions)
    for item in history:
        conv.add(item, "previous_response_id")
    before = conv.num_chars
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise errors.invalid_parameter(f"input.{i}", f"`input.{i}` must be an object")
        conv.add(item, f"input.{i}")
    if not conv.messages:
        raise errors.invalid_parameter("input", "`input` is empty: send at least one message (or `instructions`)")
    return conv.messages, conv.num_chars - before
