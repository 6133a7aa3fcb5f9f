"""Text in and out of token ids: the tokenizer, the chat template, and incremental detokenization.

The frontend owns all three so that streamed text equals the non-streamed text byte for byte and usage
counts are exact: both paths run the same detokenizer over the same ids.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from jinja2.exceptions import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from trtpipe.engine.grammar import GrammarCompiler

REPLACEMENT_CHAR = "\ufffd"


class ChatTemplateError(ValueError):
    pass


def _raise_exception(message: str):
    raise ChatTemplateError(message)


def _token_text(value) -> str | None:
    if isinstance(value, dict):  # tokenizer_config.json may store AddedToken dicts
        return value.get("content")
    return value


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


@dataclass
class ModelText:
    """A served model's tokenizer, chat template and end-of-sequence ids."""

    tokenizer: Tokenizer
    chat_template: str | None
    bos_token: str | None
    eos_token: str | None
    eos_token_ids: list[int]
    # id -> the token's bytes, for byte-level BPE tokenizers whose decode is plain byte concatenation.
    token_bytes: list[bytes] | None = field(default=None, repr=False)
    # The most characters one token stands for (0: unknown). A prompt longer than max_input_len times this cannot
    # fit, which is known before tokenizing it (openai/validation.py check_prompt_size).
    max_token_chars: int = 0
    _grammars: GrammarCompiler | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_dir(cls, directory: Path, chat_template_override: str | None = None) -> "ModelText":
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        tok_cfg = _read_json(directory / "tokenizer_config.json")
        gen_cfg = _read_json(directory / "generation_config.json")
        eos = gen_cfg.get("eos_token_id")
        eos_ids = eos if isinstance(eos, list) else ([eos] if eos is not None else [])
        eos_token = _token_text(tok_cfg.get("eos_token"))
        if not eos_ids and eos_token is not None and tokenizer.token_to_id(eos_token) is not None:
            eos_ids = [tokenizer.token_to_id(eos_token)]
        template = chat_template_override or tok_cfg.get("chat_template")
        if isinstance(template, list):  # the multi-template form: pick "default"
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        text = cls(tokenizer, template, _token_text(tok_cfg.get("bos_token")), eos_token, eos_ids)
        text.token_bytes = byte_level_table(tokenizer, json.loads((directory / "tokenizer.json").read_text()))
        # The vocabulary's strings bound a token's text: byte-level BPE spells each byte as one character, SentencePiece
        # each character once (byte-fallback pieces such as <0xE2> are longer than their byte), and special tokens
        # are their own text.
        text.max_token_chars = max(map(len, tokenizer.get_vocab(with_added_tokens=True)), default=0)
        return text

    def grammars(self) -> GrammarCompiler:
        """The guided-decoding compiler for this tokenizer (built on first use; it caches compiled guides)."""
        if self._grammars is None:
            self._grammars = GrammarCompiler(self.tokenizer.to_str(), self.vocab_size, self.eos_token_ids)
        return self._grammars

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        # The chat template already wrote any special tokens as text; do not add more.
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def render_chat(self, messages: list[dict], add_generation_prompt: bool = True,
                    tools: list[dict] | None = None, extra: dict | None = None) -> str:
        """`extra`: further template variables (a request's chat_template_kwargs, e.g. enable_thinking)."""
        if not self.chat_template:
            raise ChatTemplateError("this model has no chat template; use /v1/completions or serve with "
                                    "--chat-template")
        try:
            # `tools` as transformers passes it: a list of {"type": "function", "function": {...}}, or None.
            return _compile(self.chat_template).render(
                **(extra or {}), messages=messages, add_generation_prompt=add_generation_prompt, tools=tools,
                bos_token=self.bos_token or "", eos_token=self.eos_token or "")
        except ChatTemplateError:
            raise
        except TemplateError as e:  # includes the sandbox's SecurityError
            raise ChatTemplateError(f"the chat template failed: {e}") from None

    def detokenizer(self) -> "IncrementalDetokenizer | ByteDetokenizer":
        if self.token_bytes is not None:
            return ByteDetokenizer(self.token_bytes)
        return IncrementalDetokenizer(self.tokenizer)

    def token_piece(self, token_id: int) -> bytes:
        """The bytes one token contributes to the text (for logprobs' `token` and `bytes`)."""
        if self.token_bytes is not None:
            return self.token_bytes[token_id]
        return self.tokenizer.decode([token_id], skip_special_tokens=True).encode()


_TEMPLATES: dict[str, object] = {}


def _tojson(value, indent=None, separators=None, sort_keys=False):
    # As transformers' template filter: unicode kept, not escaped for HTML.
    return json.dumps(value, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _compile(source: str):
    """As Hugging Face renders chat templates: an immutable sandbox with trim_blocks / lstrip_blocks, loop
    controls, and the `tojson` filter and `raise_exception` / `strftime_now` globals that templates use."""
    if source not in _TEMPLATES:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            _TEMPLATES[source] = env.from_string(source)
        except TemplateError as e:
            raise ChatTemplateError(f"the chat template does not compile: {e}") from None
    return _TEMPLATES[source]


def _bytes_to_unicode() -> dict[str, int]:
    """GPT-2's reversible byte <-> printable-character map used by byte-level BPE vocabularies."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def byte_level_table(tokenizer: Tokenizer, spec: dict, check_limit: int = 4096) -> list[bytes] | None:
    """id -> bytes when decoding is byte concatenation (ByteLevel decoder), verified against the tokenizer
    on up to `check_limit` ids; None otherwise (the window detokenizer is used then)."""
    decoder = spec.get("decoder") or {}
    if decoder.get("type") != "ByteLevel" or spec.get("model", {}).get("type") != "BPE":
        return None
    char_to_byte = _bytes_to_unicode()
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    table: list[bytes] = [b""] * size
    added = {t["id"]: t for t in spec.get("added_tokens", [])}
    for token, i in tokenizer.get_vocab(with_added_tokens=True).items():
        if i in added:
            table[i] = b"" if added[i].get("special") else token.encode()
        elif all(c in char_to_byte for c in token):
            table[i] = bytes(char_to_byte[c] for c in token)
        else:
            return None
    step = max(1, size // check_limit)
    for i in range(0, size, step):
        if table[i].decode("utf-8", "replace") != tokenizer.decode([i], skip_special_tokens=True):
            return None
    return table


class ByteDetokenizer:
    """Byte-level BPE: each token is a fixed byte string, so text is an incremental UTF-8 decode of their
    concatenation. A delta never splits a character (the decoder keeps incomplete sequences), and the cost
    per token is one table lookup and one small decode."""

    __slots__ = ("_table", "_decoder")

    def __init__(self, table: list[bytes]):
        self._table = table
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def add(self, new_ids: list[int]) -> str:
        table = self._table
        if len(new_ids) == 1:
            return self._decoder.decode(table[new_ids[0]])
        return self._decoder.decode(b"".join([table[i] for i in new_ids]))

    def flush(self) -> str:
        return self._decoder.decode(b"", True)


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas that never split a UTF-8 character (any tokenizer).

    Byte-level tokens can end in the middle of a multi-byte character; decoding then yields U+FFFD. We hold
    such text back until a later token completes it. Decoding a short window (from `prefix_offset`) rather
    than the whole sequence keeps each step O(window), and starting the window a token early keeps
    tokenizers that strip or merge across token boundaries (SentencePiece leading spaces) correct.
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
