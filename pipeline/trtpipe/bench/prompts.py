"""Synthetic prompts of a requested token length, and the token counter used to size and count them.

With a tokenizer.json the lengths are exact for that tokenizer (up to re-tokenization at the cut);
without one a prompt of N tokens is N common English words, which most BPE vocabularies encode as one
token each (with the leading space). The report says which of the two was used.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from trtpipe.bench.errors import BenchError

# Common short words; each is a single token in the GPT-2, Llama and Mistral vocabularies.
WORDS = tuple(dict.fromkeys("""
the of and to in is was for on that with as by at from his it an were are which this be has had not
one or but its new also first two after who their they have her she been other all time when there
into more only over than most about up out can some would then made may these many like year world
city people state used name such under three part between later each life work so where both city
group during known de film well team south new school national while found around north before area
second since series high being through war what them end four long could game own great without same
house season family place best use each back old home day early line set small water power light
music week road book land sea body point head hand force field open face order black white green red
river story young money king house party level front case air play film song left right line form
""".split()))


class TokenCounter:
    """Counts tokens with a tokenizer.json when given, else approximates one word per token."""

    def __init__(self, tokenizer_path: str | None = None):
        self.tokenizer_path = tokenizer_path
        self._tokenizer = None
        if tokenizer_path is not None:
            path = Path(tokenizer_path)
            if path.is_dir():
                path = path / "tokenizer.json"
            if not path.is_file():
                raise BenchError("tokenizer file not found", where=str(path),
                                 fix="pass --tokenizer pointing at a tokenizer.json (or its folder)")
            from tokenizers import Tokenizer

            try:
                self._tokenizer = Tokenizer.from_file(str(path))
            except Exception as exc:  # tokenizers raises a bare Exception on malformed files
                raise BenchError(f"cannot load tokenizer: {exc}", where=str(path),
                                 fix="pass a Hugging Face tokenizer.json") from exc

    @property
    def is_exact(self) -> bool:
        return self._tokenizer is not None

    def describe(self) -> str:
        if self.is_exact:
            return f"tokenizer-aware ({self.tokenizer_path})"
        return "approximated by words (one common English word per token; pass --tokenizer for exact lengths)"

    def encode(self, text: str) -> list[int]:
        assert self._tokenizer is not None
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, token_ids: list[int]) -> str:
        assert self._tokenizer is not None
        return self._tokenizer.decode(token_ids)

    def count(self, text: str) -> int:
        if self._tokenizer is None:
            return len(text.split())
        return len(self.encode(text))


@dataclass(frozen=True)
class Prompt:
    text: str
    num_tokens: int  # by our counter; the server's `usage.prompt_tokens` wins when returned


def make_prompts(num_prompts: int, input_len: int, counter: TokenCounter, *, seed: int, point_index: int,
                 shared_prefix_len: int = 0) -> list[Prompt]:
    """`num_prompts` prompts of `shared_prefix_len + input_len` tokens.

    The prefix is the same for every prompt of every sweep point (it is meant to be reused by a prefix
    cache); the rest is drawn per sweep point, so a later point never hits the cache on an earlier
    point's prompts.
    """
    prefix = _text_of_length(shared_prefix_len, counter, random.Random(f"{seed}/prefix"))
    rng = random.Random(f"{seed}/{point_index}")
    prompts = []
    for _ in range(num_prompts):
        body = _text_of_length(input_len, counter, rng)
        text = f"{prefix} {body}" if prefix else body
        prompts.append(Prompt(text=text, num_tokens=counter.count(text)))
    return prompts


def _text_of_length(num_tokens: int, counter: TokenCounter, rng: random.Random) -> str:
    if num_tokens == 0:
        return ""
    words = [rng.choice(WORDS) for _ in range(num_tokens)]
    if not counter.is_exact:
        return " ".join(words)
    # Words can cost more than one token each, so cut at the token level and decode back.
    token_ids = counter.encode(" ".join(words))
    while len(token_ids) < num_tokens:
        words.append(rng.choice(WORDS))
        token_ids = counter.encode(" ".join(words))
    return counter.decode(token_ids[:num_tokens])
