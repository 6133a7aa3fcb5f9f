"""Grammar-constrained decoding: guides compiled once per tokenizer and cached, one matcher per sequence.

The guide arrives as TensorRT-LLM's pair `guided_decoding_guide_type` / `guided_decoding_guide`, with the
C++ backend's type names: `json` (any JSON object or array, the guide text is ignored), `json_schema`,
`regex`, `ebnf_grammar` (GBNF, `root ::= ...`) and `structural_tag` (xgrammar's format: `structures` of
begin/schema/end and the `triggers` that start them, free text elsewhere).

NOTE: llguidance, not xgrammar. xgrammar (what TensorRT-LLM, vLLM and SGLang use) declares torch,
transformers and triton as hard dependencies of its wheel: gigabytes of CUDA torch for a NumPy engine.
llguidance is one Rust wheel with no Python dependencies, builds its tokenizer from the model's own
tokenizer.json, computes a token bitmask per step, and TensorRT-LLM's PyTorch backend offers it too
(`guided_decoding_backend: llguidance`).

Design forces: compiling a schema costs far more than a step (measured in bench/grammar_step_cost.py), so
`GrammarCompiler` keeps an LRU of compiled grammars keyed by (guide type, guide text); the compiler itself is
one per tokenizer, so the key is (tokenizer, guide type, guide text). A compiled grammar is an immutable
template; each sequence gets its own `GrammarState` (a copy of the template's matcher), owned by that
sequence alone, because the matcher state advances with that sequence's tokens.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path

import llguidance
import numpy as np

GUIDE_TYPES = ("json", "json_schema", "regex", "ebnf_grammar", "structural_tag")
# Compact JSON, as xgrammar in TensorRT-LLM compiles it (any_whitespace false): a model cannot pad the
# output with whitespace until max_tokens runs out.
_JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}
_ANY_JSON = {"anyOf": [{"type": "object"}, {"type": "array"}]}
MAX_CACHED_GRAMMARS = 256


class GrammarError(ValueError):
    """A guide that cannot be compiled; the message says which and why."""


def to_llguidance(guide_type: str, guide: str) -> str:
    """A guide in TensorRT-LLM's terms -> llguidance's grammar text (not yet checked)."""
    if guide_type not in GUIDE_TYPES:
        raise GrammarError(f"guide type must be one of {list(GUIDE_TYPES)}. Given: {guide_type!r}")
    try:
        if guide_type == "json":
            return llguidance.LLMatcher.grammar_from_json_schema(_ANY_JSON, defaults=_JSON_OPTIONS)
        if guide_type == "json_schema":
            return llguidance.LLMatcher.grammar_from_json_schema(close_objects(json.loads(guide)),
                                                                 defaults=_JSON_OPTIONS)
        if guide_type == "regex":
            return llguidance.LLMatcher.grammar_from_regex(guide)
        if guide_type == "ebnf_grammar":
            return llguidance.grammar_from("ebnf", guide)
        return _structural_tag(guide)
    except (ValueError, TypeError, KeyError) as e:
        raise GrammarError(f"the {guide_type} guide is not valid: {e}") from None


# Keywords that say nothing about which values match (xgrammar's list of keys skipped when it compares schemas).
_ANNOTATIONS = frozenset({"title", "default", "description", "examples", "deprecated", "readOnly", "writeOnly",
                          "$comment"})
# Where subschemas live: one schema, a list of them, or a name -> schema map.
_ONE, _LIST, _MAP = ("items", "additionalProperties", "unevaluatedProperties", "not", "if", "then", "else",
                     "contains", "additionalItems", "unevaluatedItems"), \
    ("prefixItems", "anyOf", "oneOf", "allOf"), ("properties", "$defs", "definitions", "patternProperties")


def close_objects(schema):
    """The schema with every object closed that does not say otherwise, as xgrammar compiles it in TensorRT-LLM
    and vLLM (strict mode) and as OpenAI's structured outputs require: an object schema without
    `additionalProperties` or `unevaluatedProperties` admits no keys beyond its `properties`. A bare
    `{"type": "object"}` (nothing but annotations beside it) stays any object, as in xgrammar.

    NOTE: JSON Schema itself leaves such objects open, and llguidance follows it; one rule on every backend
    matters more: with an open object a model may write keys until max_tokens runs out."""
    if isinstance(schema, list):
        return [close_objects(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in _ONE or key in _LIST:
            out[key] = close_objects(value)
        elif key in _MAP and isinstance(value, dict):
            out[key] = {name: close_objects(s) for name, s in value.items()}
        else:
            out[key] = value
    types = out.get("type")
    is_object = types == "object" or (isinstance(types, list) and "object" in types) or "properties" in out
    bare = set(out) - _ANNOTATIONS <= {"type"}
    if is_object and not bare and "additionalProperties" not in out and "unevaluatedProperties" not in out:
        out["additionalProperties"] = False
    return out


def _structural_tag(guide: str) -> str:
    """xgrammar's structural tag: {"type": "structural_tag", "structures": [{"begin", "schema", "end"}],
    "triggers": [...]} -> llguidance's lazy tool-call grammar (free text until a trigger, then the tag)."""
    spec = json.loads(guide)
    triggers = spec.get("triggers") or []
    tags = []
    for s in spec["structures"]:
        trigger = next((t for t in triggers if s["begin"].startswith(t)), None)
        if trigger is None:
            raise ValueError(f"no trigger is a prefix of the structure's begin {s['begin']!r}")
        tags.append(llguidance.StructTag(trigger=trigger, begin=s["begin"], grammar=s.get("schema", {}),
                                         end=s.get("end", "")))
    if not tags:
        raise ValueError("`structures` is empty")
    # Our tokenizers spell triggers such as <tool_call> as text, not as one special token.
    return llguidance.StructTag.to_grammar(tags, assume_special=False)


class GrammarState:
    """One sequence's position in its grammar. Owned by that sequence; never shared."""

    __slots__ = ("_matcher", "vocab_size", "eos_token_ids")

    def __init__(self, matcher: llguidance.LLMatcher, vocab_size: int, eos_token_ids: tuple[int, ...]):
        self._matcher, self.vocab_size, self.eos_token_ids = matcher, vocab_size, eos_token_ids

    def allowed(self) -> np.ndarray:
        """(V,) bool: the tokens the grammar accepts next (end-of-sequence only where the grammar may end)."""
        bits = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        mask = np.unpackbits(bits, bitorder="little")[: self.vocab_size].astype(bool)
        if not mask.any():  # a stopped grammar: only ending is left
            mask[list(self.eos_token_ids)] = True
        return mask

    def accept(self, token_id: int) -> bool:
        """Advance by one token; False (and the state is dead) if the grammar refuses it."""
        return self._matcher.consume_token(token_id)

    @property
    def is_stopped(self) -> bool:
        """The grammar is complete and admits nothing more: the sequence finishes here (as `stop`)."""
        return self._matcher.is_stopped()

    @property
    def is_accepting(self) -> bool:
        return self._matcher.is_accepting()

    @property
    def error(self) -> str | None:
        return self._matcher.get_error() if self._matcher.is_error() else None

    def fork(self) -> GrammarState:
        """An independent copy, to try draft tokens without moving this state."""
        return GrammarState(self._matcher.deep_copy(), self.vocab_size, self.eos_token_ids)


def guide_rows(state: GrammarState, draft_token_ids: list[int]) -> tuple[list[np.ndarray], int]:
    """The masks for a verify step's k+1 rows, and how many drafts the grammar lets through.

    Row i's mask is the grammar after drafts[:i]. Drafts are cut at the first one the grammar refuses (that
    row's mask then constrains the target's own token there) or right after the one that completes it.
    `state` itself does not move: the tokens that are kept advance it when they are committed.
    """
    masks = [state.allowed()]
    if not draft_token_ids:
        return masks, 0
    probe = state.fork()
    for i, token in enumerate(draft_token_ids):
        if not masks[i][token] or not probe.accept(token):
            return masks, i
        masks.append(probe.allowed())
        if probe.is_stopped:
            return masks, i + 1
    return masks, len(draft_token_ids)


class CompiledGrammar:
    """An immutable compiled guide; `new_state()` hands each sequence its own matcher."""

    def __init__(self, template: llguidance.LLMatcher, vocab_size: int, eos_token_ids: tuple[int, ...]):
        self._template, self.vocab_size, self.eos_token_ids = template, vocab_size, eos_token_ids

    def new_state(self) -> GrammarState:
        return GrammarState(self._template.deep_copy(), self.vocab_size, self.eos_token_ids)


class GrammarCompiler:
    """Compiles guides against one tokenizer, with an LRU of the compiled grammars (thread-safe)."""

    def __init__(self, tokenizer_json: str, vocab_size: int, eos_token_ids: list[int],
                 max_cached: int = MAX_CACHED_GRAMMARS):
        if not eos_token_ids:
            raise GrammarError("guided decoding needs the tokenizer's end-of-sequence id; none is configured")
        self.vocab_size = vocab_size
        self.eos_token_ids = tuple(eos_token_ids)
        self._tokenizer = llguidance.LLTokenizer(tokenizer_json, n_vocab=vocab_size, eos_token=list(eos_token_ids))
        self._cache: OrderedDict[tuple[str, str], CompiledGrammar] = OrderedDict()
        self._lock = threading.Lock()
        self.max_cached = max_cached
        self.num_compiled = 0  # cache misses, for tests and stats

    @classmethod
    def from_tokenizer_dir(cls, directory: Path, vocab_size: int) -> GrammarCompiler:
        """tokenizer.json plus the end-of-sequence ids of generation_config.json (else tokenizer_config.json)."""
        directory = Path(directory)
        text = (directory / "tokenizer.json").read_text(encoding="utf-8")
        return cls(text, vocab_size, eos_token_ids_of(directory, json.loads(text)))

    def compile(self, guide_type: str, guide: str) -> CompiledGrammar:
        key = (guide_type, "" if guide_type == "json" else guide)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        grammar = to_llguidance(guide_type, guide)
        # llguidance releases the GIL while it compiles: other threads keep running.
        matcher = llguidance.LLMatcher(self._tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise GrammarError(f"the {guide_type} guide does not compile: {_one_line(matcher.get_error())}")
        compiled = CompiledGrammar(matcher, self.vocab_size, self.eos_token_ids)
        with self._lock:
            self.num_compiled += 1
            self._cache[key] = compiled
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
        return compiled


def eos_token_ids_of(directory: Path, tokenizer: dict) -> list[int]:
    def read(name: str) -> dict:
        path = directory / name
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    eos = read("generation_config.json").get("eos_token_id")
    if eos is not None:
        return list(eos) if isinstance(eos, list) else [int(eos)]
    token = read("tokenizer_config.json").get("eos_token")
    token = token.get("content") if isinstance(token, dict) else token
    ids = [t["id"] for t in tokenizer.get("added_tokens", []) if t.get("content") == token]
    if not ids and token is not None:
        ids = [i for t, i in tokenizer.get("model", {}).get("vocab", {}).items() if t == token]
    return ids


def _one_line(message: str) -> str:
    text = " ".join(line.strip() for line in message.splitlines() if line.strip())
    return text[:400] or "unknown error"
