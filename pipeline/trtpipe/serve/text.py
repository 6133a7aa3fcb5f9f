"""Text in and out of token ids: the tokenizer, the chat template, and incremental detokenization.

The frontend owns all three so that streamed text equals the non-streamed text byte for byte and usage
counts are exact: both paths run the same IncrementalDetokenizer over the same ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

REPLACEMENT_CHAR = "\ufffd"


class ChatTemplateError(ValueError):
    pass


def _raise_exception(message: str):
    raise ChatTemplateError(message)


def _token_text(value) -> str | None:
    if isinstance(value, dict):  # tokenizer_config.json may store AddedToken dicts
        return value.get("content")
    return value


@dataclass
class ModelText:
    """A served model's tokenizer, chat template and end-of-sequence ids."""

    tokenizer: Tokenizer
    chat_template: str | None
    bos_token: str | None
    eos_token: str | None
    eos_token_ids: list[int]

    @classmethod
    def from_dir(cls, directory: Path, chat_template_override: str | None = None) -> "ModelText":
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        tok_cfg = json.loads((directory / "tokenizer_config.json").read_text()) \
            if (directory / "tokenizer_config.json").is_file() else {}
        gen_cfg = json.loads((directory / "generation_config.json").read_text()) \
            if (directory / "generation_config.json").is_file() else {}
        eos = gen_cfg.get("eos_token_id")
        eos_ids = eos if isinstance(eos, list) else ([eos] if eos is not None else [])
        eos_token = _token_text(tok_cfg.get("eos_token"))
        if not eos_ids and eos_token is not None and tokenizer.token_to_id(eos_token) is not None:
            eos_ids = [tokenizer.token_to_id(eos_token)]
        template = chat_template_override or tok_cfg.get("chat_template")
        if isinstance(template, list):  # the multi-template form: pick "default"
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        return cls(tokenizer, template, _token_text(tok_cfg.get("bos_token")), eos_token, eos_ids)

    def encode(self, text: str) -> list[int]:
        # The chat template already wrote any special tokens as text; do not add more.
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def render_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        if not self.chat_template:
            raise ChatTemplateError("this model has no chat template; use /v1/completions or serve with --chat-template")
        return _compile(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token or "", eos_token=self.eos_token or "")

    def detokenizer(self) -> "IncrementalDetokenizer":
        return IncrementalDetokenizer(self.tokenizer)


_TEMPLATES: dict[str, object] = {}


def _compile(source: str):
    """Hugging Face renders chat templates in an immutable sandbox with trim_blocks / lstrip_blocks."""
    if source not in _TEMPLATES:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_exception
        try:
            _TEMPLATES[source] = env.from_string(source)
        except TemplateError as e:
            raise ChatTemplateError(f"the chat template does not compile: {e}") from None
    return _TEMPLATES[source]


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas that never split a UTF-8 character.

    Byte-level tokens can end in the middle of a multi-byte character; decoding then yields U+FFFD. We hold
    such text back until a later token completes it. Decoding a short window (from `prefix_offset`) rather
    than the whole sequence keeps each step O(window), and starting the window a few tokens early keeps
    tokenizers that merge across token boundaries (leading spaces) correct.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.token_ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def add(self, new_ids: list[int]) -> str:
        self.token_ids.extend(new_ids)
        prefix_text = self._decode(self.token_ids[self.prefix_offset:self.read_offset])
        full_text = self._decode(self.token_ids[self.prefix_offset:])
        if len(full_text) > len(prefix_text) and not full_text.endswith(REPLACEMENT_CHAR):
            delta = full_text[len(prefix_text):]
            self.prefix_offset, self.read_offset = self.read_offset, len(self.token_ids)
            return delta
        return ""

    def flush(self) -> str:
        """At the end of a sequence: whatever is held back, even an incomplete character."""
        prefix_text = self._decode(self.token_ids[self.prefix_offset:self.read_offset])
        full_text = self._decode(self.token_ids[self.prefix_offset:])
        self.prefix_offset = self.read_offset = len(self.token_ids)
        return full_text[len(prefix_text):]
