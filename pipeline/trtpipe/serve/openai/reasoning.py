"""`<think>...</think>` out of the content and into `reasoning_content`, streaming, for templates that have it.

Some templates (DeepSeek-R1, Qwen3 with thinking) open the `<think>` block in the generation prompt itself, so
the output starts inside the reasoning; otherwise it is reasoning only if it opens with `<think>`. Text that may
still turn out to be the start of a marker is held back until the next delta decides.
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


def template_has_reasoning(template: str | None) -> bool:
    return bool(template) and OPEN in template and CLOSE in template


def _held(text: str, marker: str) -> int:
    """How many trailing characters of text are a proper prefix of marker."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


class ReasoningSplitter:
    def __init__(self, prompt: str):
        self._state = "reasoning" if prompt.rstrip().endswith(OPEN) else "start"
        self._buf = ""

    def feed(self, text: str, final: bool = False) -> tuple[str, str]:
        """-> (reasoning, content) that can go out now."""
        self._buf += text
        reasoning = content = ""
        while True:
            if self._state == "start":
                stripped = self._buf.lstrip()
                if stripped.startswith(OPEN):
                    self._buf, self._state = stripped[len(OPEN):], "reasoning"
                    continue
                if OPEN.startswith(stripped) and not final:
                    return reasoning, content  # could still be "<think>"
                self._state = "content"
            if self._state == "reasoning":
                i = self._buf.find(CLOSE)
                if i >= 0:
                    reasoning += self._buf[:i]
                    self._buf, self._state = self._buf[i + len(CLOSE):], "gap"
                    continue
                keep = 0 if final else _held(self._buf, CLOSE)
                reasoning += self._buf[:len(self._buf) - keep]
                self._buf = self._buf[len(self._buf) - keep:]
                return reasoning, content
            if self._state == "gap":  # the newlines between </think> and the answer belong to neither
                self._buf = self._buf.lstrip("\n")
                if not self._buf and not final:
                    return reasoning, content
                self._state = "content"
            content += self._buf
            self._buf = ""
            return reasoning, content
