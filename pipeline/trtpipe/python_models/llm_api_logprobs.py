"""The LLM API's log-probs -> trtpipe's: what python_models/llm_api.py hands to `deliver` as RequestOutput fields.

TensorRT-LLM's CompletionOutput (tensorrt_llm/executor/result.py) carries
- `logprobs`: per generated token, a {token_id: Logprob(logprob, rank)} dict (older releases: a float). The
  list grows over a stream, as `token_ids` does. The PyTorch sampler of 1.2.x fills it with the top
  `SamplingParams.logprobs` tokens of the raw logits, ranks 1..k; the sampled token is in it only when it is
  one of them (always under greedy decoding). Later releases add the sampled token beside the top k.
- `prompt_logprobs`: per prompt position t, the same kind of dict for the distribution that position predicts
  (token t+1), top `SamplingParams.prompt_logprobs` only in 1.2.x; the last position predicts the first
  generated token, not a prompt token.

trtpipe's shapes are the reference engine's (engine/engine.py): per token (ids, log-probs) of the k most likely,
most likely first (ties by id); the sampled token's own log-prob separately; prompt log-probs of tokens 1..n-1.
A value TensorRT-LLM did not return is never made up: the request fails, saying which and why.
"""

from __future__ import annotations

from typing import Any

TopLogProbs = tuple[list[int], list[float]]


class LogProbsUnavailable(ValueError):
    """TensorRT-LLM returned no log-prob for a token the request needs one for."""


def _value(entry: Any) -> float:
    return float(getattr(entry, "logprob", entry))


def _entry_log_prob(entry: Any, token: int, what: str, fix: str) -> float:
    if not isinstance(entry, dict):
        return float(entry)  # a release that returns the sampled token's log-prob as a float
    if token not in entry:
        raise LogProbsUnavailable(
            f"TensorRT-LLM returned no log-prob for {what} {token}: it returned the {len(entry)} most likely "
            f"tokens only (as 1.2.x does) and this one was not among them; {fix}")
    return _value(entry[token])


def _top(entry: Any, k: int) -> TopLogProbs:
    if not isinstance(entry, dict):
        raise LogProbsUnavailable(f"TensorRT-LLM returned one log-prob per token, no alternatives; {k} top were "
                                  f"asked for (this release returns no top log-probs)")
    if len(entry) < k:
        raise LogProbsUnavailable(f"TensorRT-LLM returned {len(entry)} top log-probs for a token; {k} were asked for")
    best = sorted(entry.items(), key=lambda item: (-_value(item[1]), item[0]))[:k]
    return [int(token) for token, _ in best], [_value(v) for _, v in best]


def sampled_log_probs(entries: list[Any], tokens: list[int]) -> list[float]:
    """Each generated token's own log-prob, from its entry in CompletionOutput.logprobs."""
    fix = "ask with greedy decoding (temperature 0) or more top log-probs"
    return [_entry_log_prob(e, t, "sampled token", fix) for e, t in zip(entries, tokens)]


def top_log_probs(entries: list[Any], k: int) -> list[TopLogProbs]:
    """The k most likely tokens at each generated position, most likely first."""
    return [_top(e, k) for e in entries]


def prompt_log_probs(entries: list[Any], prompt: list[int], k: int) -> tuple[list[float], list[TopLogProbs] | None]:
    """CompletionOutput.prompt_logprobs -> RequestOutput.prompt_log_probs: the log-probs of prompt tokens 1..n-1
    (entry t is the distribution predicting token t+1), with their top k alternatives when k > 0."""
    entries = list(entries)[:len(prompt) - 1]  # the last position predicts the first generated token
    if len(entries) < len(prompt) - 1:
        raise LogProbsUnavailable(f"TensorRT-LLM returned prompt log-probs for {len(entries)} positions; the "
                                  f"prompt has {len(prompt)} tokens")
    fix = "prompt log-probs need a TensorRT-LLM that returns each prompt token's own"
    lps = [_entry_log_prob(e, t, "prompt token", fix) for e, t in zip(entries, prompt[1:])]
    return lps, (top_log_probs(entries, k) if k else None)
