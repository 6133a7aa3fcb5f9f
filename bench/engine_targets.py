"""The reference engine's targets, measured in process (no Triton) on the real tiny-llama engine.

Builds tiny-llama and tiny-llama-draft with the pipeline's own stages into a throwaway artifact cache,
runs every engine with the limits tiny-llama is served with (ServingSpec.from_config, as the Triton
model does), and measures:

- greedy identity: alone vs batched with 63 others; prefix reuse on vs off; speculative decoding with
  draft = target and with the small draft, against plain greedy;
- throughput vs concurrency (1..64): decode output tokens/s and total tokens/s; each ratio from two
  points run back to back, median over rounds; a cProfile of the decode at 1, 16 and 64 requests;
- KV memory: after every step of a 64-request batched run, allocated - held < one block per sequence;
- TTFT with a shared 512-token system prompt, second request vs first, reuse on and off;
- speculation: acceptance rate and tokens per target step, draft = target and the small draft.

Writes bench/results/engine-targets.md, engine-targets.json and engine-throughput.png.

    .venv/bin/python -m bench.engine_targets                 # about 2-4 minutes on 2 busy cores
    .venv/bin/python -m bench.engine_targets --rounds 3 --out /tmp/targets

The machine is shared: every ratio is taken between measurements run back to back, and the report
gives the median and the range over rounds, never one absolute sample.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from trtpipe.build import run_stages
from trtpipe.cache import ArtifactCache
from trtpipe.config import load_config
from trtpipe.engine import Engine, EngineLimits, EngineRequest, SamplingParams
from trtpipe.spec import ServingSpec

from bench.machine_load import ForeignLoad, wait_until_quiet

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
CORPUS = Path(__file__).resolve().parents[1] / "pipeline" / "trtpipe" / "data" / "corpus.txt"
GREEDY = SamplingParams(temperature=0.0)
CONCURRENCIES = (1, 2, 4, 8, 16, 32, 64)
SPEC_K = 4
MAX_FOREIGN_CORES = 0.15  # CPU other processes may use during a throughput pair before it is redone
PROFILE_GROUPS = {"model math (model.py)": {"model.py"},
                  "engine bookkeeping": {"engine.py", "scheduler.py", "kv_cache.py", "block_pool.py", "sequence.py",
                                         "sampling.py", "speculative.py"}}


# ---------------------------------------------------------------------------------------------------
# Setup: the engines as served, and prompts of real text


def build(cache_root: Path) -> dict:
    """Build both models with the pipeline's stages; returns engine dirs, limits and the tokenizer."""
    from tokenizers import Tokenizer

    config, draft_config = load_config("tiny-llama"), load_config("tiny-llama-draft")
    target, _ = run_stages(config, ArtifactCache(cache_root))
    draft, _ = run_stages(draft_config, ArtifactCache(cache_root))
    s = ServingSpec.from_config(config)
    limits = EngineLimits(
        max_batch_size=s.max_batch_size, max_num_tokens=s.max_num_tokens, max_seq_len=s.max_seq_len,
        tokens_per_block=s.tokens_per_block, max_tokens_in_paged_kv_cache=s.max_tokens_in_paged_kv_cache,
        kv_cache_free_mem_fraction=s.kv_cache_free_mem_fraction, enable_kv_cache_reuse=s.enable_kv_cache_reuse,
        batch_scheduler_policy=s.batch_scheduler_policy, enable_chunked_context=s.enable_chunked_context)
    return {"target": target["compile"].path, "draft": draft["compile"].path, "limits": limits,
            "tokenizer": Tokenizer.from_file(str(target["fetch"].path / "tokenizer.json"))}


def new_engine(engine_dir: Path, limits: EngineLimits, **overrides) -> Engine:
    """An engine as a long-running server has it: KV pages faulted in, BLAS warmed up."""
    engine = Engine.from_dir(engine_dir, replace(limits, **overrides))
    # np.zeros maps the cache lazily; a fresh engine would charge first-touch page faults to whichever
    # request first lands on a block. Writing zeros changes no value.
    engine.kv.k_cache.fill(0.0)
    engine.kv.v_cache.fill(0.0)
    engine.generate([[1, 2, 3, 4, 5, 6, 7, 8]], 2)
    return engine


class PromptMaker:
    """Token prompts of exact lengths, cut from the corpus' sentences shuffled by a seeded rng."""

    def __init__(self, tokenizer, seed: int) -> None:
        self.tokenizer = tokenizer
        self.sentences = [s for s in re.split(r"(?<=[.!?])\s+", CORPUS.read_text(encoding="utf-8")) if s.strip()]
        self.rng = np.random.default_rng(seed)

    def __call__(self, num_tokens: int) -> list[int]:
        ids: list[int] = []
        while len(ids) < num_tokens:
            order = self.rng.permutation(len(self.sentences))
            ids += self.tokenizer.encode(" ".join(self.sentences[i] for i in order) + " ").ids
        return ids[:num_tokens]


def run_alone(engine: Engine, rid: str, prompt: list[int], max_new_tokens: int) -> list[int]:
    engine.add_request(EngineRequest(rid, prompt, max_new_tokens, sampling=GREEDY))
    return drain(engine)[rid]


def drain(engine: Engine, on_step=None) -> dict[str, list[int]]:
    """Step until idle; returns every request's tokens. on_step(engine) runs after each step."""
    tokens: dict[str, list[int]] = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            tokens.setdefault(out.request_id, []).extend(out.new_token_ids)
        if on_step is not None:
            on_step(engine)
    return tokens


def med(values: list[float]) -> float:
    return float(statistics.median(values))


def spread(values: list[float], fmt: str = ".2f") -> str:
    return f"median {med(values):{fmt}} (range {min(values):{fmt}}-{max(values):{fmt}}, n={len(values)})"


# ---------------------------------------------------------------------------------------------------
# Greedy identity and KV memory


def kv_slack_checker(record: list[dict]):
    """After each step: allocated slots - KV tokens held < num_running * block_size (and per sequence)."""

    def check(engine: Engine) -> None:
        stats, running = engine.stats(), engine.scheduler.running
        bs = stats["tokens_per_block"]
        allocated = stats["kv_blocks_used"] * bs
        held = sum(s.num_computed_tokens for s in running)  # tokens whose K/V is in the cache
        per_seq = [s.num_blocks * bs - s.num_computed_tokens for s in running]
        # With reuse off no block is shared: the pool's count must equal the block tables' sum.
        unique = len({b for s in running for b in s.block_table})
        record.append({"running": len(running), "allocated_slots": allocated, "held_tokens": held,
                       "slack": allocated - held, "max_seq_slack": max(per_seq, default=0),
                       "tables_match_pool": unique == stats["kv_blocks_used"],
                       "ok": allocated - held < max(1, len(running)) * bs and all(0 <= x < bs for x in per_seq)})

    return check


def identity_alone_vs_batched(ctx: dict, prompts: list[list[int]], new_tokens: int) -> dict:
    """Each prompt alone, then all 64 at once; reuse off so every run computes its own prompt."""
    engine = new_engine(ctx["target"], ctx["limits"], enable_kv_cache_reuse=False)
    alone = [run_alone(engine, f"alone-{i}", p, new_tokens) for i, p in enumerate(prompts)]
    for i, p in enumerate(prompts):
        engine.add_request(EngineRequest(f"batched-{i}", p, new_tokens, sampling=GREEDY))
    kv_record: list[dict] = []
    batched = drain(engine, kv_slack_checker(kv_record))
    same = sum(alone[i] == batched[f"batched-{i}"] for i in range(len(prompts)))
    return {"alone": alone, "num_identical": same, "num_requests": len(prompts), "kv_record": kv_record,
            "kv_blocks_used_after": engine.stats()["kv_blocks_used"]}


def identity_prefix_reuse(ctx: dict, make_prompt: PromptMaker, new_tokens: int) -> dict:
    """Shared 512-token system prompt: one request alone, then 15 batched that hit its blocks, reuse on/off.

    The batch also holds an exact repeat of the first prompt (a full hit: only the last token is computed)
    and a follow-up turn (first prompt + its answer + a new question).
    """
    system = make_prompt(512)
    first = system + make_prompt(40)
    gen = np.random.default_rng(7)
    rest = [system + make_prompt(int(gen.integers(8, 90))) for _ in range(13)]
    follow_up_question = make_prompt(20)
    texts, reused, batch = {}, {}, None
    for reuse in (True, False):
        engine = new_engine(ctx["target"], ctx["limits"], enable_kv_cache_reuse=reuse)
        answer = run_alone(engine, "first", first, new_tokens)
        # The follow-up turn is built from the reuse-on answer, so both runs get the same prompts.
        batch = batch or [first, first + answer + follow_up_question] + rest
        for i, p in enumerate(batch):
            engine.add_request(EngineRequest(f"r{i}", p, new_tokens, sampling=GREEDY))
        num_reused = 0
        out: dict[str, list[int]] = {"first": answer}
        while engine.has_unfinished_requests():
            for o in engine.step():
                out.setdefault(o.request_id, []).extend(o.new_token_ids)
                num_reused += o.num_reused_prompt_tokens if o.finished else 0
        texts[reuse], reused[reuse] = out, num_reused
        del engine
    same = sum(texts[True][k] == texts[False][k] for k in texts[False])
    return {"num_identical": same, "num_requests": len(texts[False]), "reused_tokens_on": reused[True],
            "reused_tokens_off": reused[False]}


# ---------------------------------------------------------------------------------------------------
# Speculative decoding: the draft proposes k greedily, the target verifies them in one step


def speculative_generate(target: Engine, draft: Engine, prompt: list[int], num_new: int, k: int, tag: str) -> dict:
    generated: list[int] = []
    drafted = accepted = target_steps = calls = 0
    while len(generated) < num_new:
        context = prompt + generated
        kk = min(k, num_new - len(generated) - 1)
        proposals = run_alone(draft, f"{tag}-d{calls}", context, kk) if kk else []
        target.add_request(EngineRequest(f"{tag}-t{calls}", context, kk + 1, sampling=GREEDY,
                                         draft_token_ids=proposals or None))
        while target.has_unfinished_requests():
            target_steps += 1
            for out in target.step():
                generated += out.new_token_ids
                if out.finished:
                    drafted += out.num_draft_tokens
                    accepted += out.num_accepted_draft_tokens
        calls += 1
    return {"tokens": generated, "drafted": drafted, "accepted": accepted, "target_steps": target_steps}


def speculation(ctx: dict, prompts: list[list[int]], references: list[list[int]], new_tokens: int) -> dict:
    results = {}
    for name, draft_dir in (("draft = target", ctx["target"]), ("tiny-llama-draft", ctx["draft"])):
        target = new_engine(ctx["target"], ctx["limits"])
        draft = new_engine(draft_dir, ctx["limits"])
        target.accept_counts.counts.clear()
        t0 = time.perf_counter()
        runs = [speculative_generate(target, draft, p, new_tokens, SPEC_K, f"s{i}") for i, p in enumerate(prompts)]
        seconds = time.perf_counter() - t0
        drafted, accepted = sum(r["drafted"] for r in runs), sum(r["accepted"] for r in runs)
        results[name] = {
            "num_identical": sum(r["tokens"] == ref for r, ref in zip(runs, references, strict=True)),
            "num_requests": len(prompts),
            "acceptance_rate": accepted / drafted if drafted else 0.0,
            "tokens_per_target_step": sum(len(r["tokens"]) for r in runs) / sum(r["target_steps"] for r in runs),
            "tokens_per_verify_call": target.accept_counts.tokens_per_target_step,
            "accept_counts": list(target.accept_counts.counts),
            "seconds": round(seconds, 3),
        }
        del target, draft
    return results


# ---------------------------------------------------------------------------------------------------
# Throughput vs concurrency


def throughput_point(engine: Engine, prompts: list[list[int]], new_tokens: int, tag: str) -> dict:
    """One batch to completion. Prefill phase: until every request has its first token (those first
    tokens count as prefill output). Decode phase: every later step, each timed on its own."""
    for i, p in enumerate(prompts):
        engine.add_request(EngineRequest(f"{tag}-{i}", p, new_tokens, sampling=GREEDY))
    started: set[str] = set()
    t0 = time.perf_counter()
    while len(started) < len(prompts):
        started.update(o.request_id for o in engine.step() if o.new_token_ids)
    t1 = time.perf_counter()
    step_rates = []  # tokens/s of each decode step
    decode_tokens = decode_steps = 0
    while engine.has_unfinished_requests():
        ts = time.perf_counter()
        n = sum(len(o.new_token_ids) for o in engine.step())
        step_rates.append(n / (time.perf_counter() - ts))
        decode_tokens += n
        decode_steps += 1
    t2 = time.perf_counter()
    num_prompt = sum(len(p) for p in prompts)
    num_out = decode_tokens + len(prompts)
    return {"prefill_s": t1 - t0, "decode_s": t2 - t1, "decode_tokens": decode_tokens, "decode_steps": decode_steps,
            "output_tokens": num_out, "prompt_tokens": num_prompt, "total_s": t2 - t0, "step_rates": step_rates}


def openblas_threads():
    """(get, set) for numpy's bundled OpenBLAS thread count, or None where it is not found."""
    import ctypes
    import glob

    libs = glob.glob(str(Path(np.__file__).parent.parent / "numpy.libs" / "libopenblas*"))
    for path in libs:
        lib = ctypes.CDLL(path)
        for suffix in ("64_", ""):
            get, set_ = (getattr(lib, f"openblas_{v}_num_threads{suffix}", None) for v in ("get", "set"))
            if get is not None and set_ is not None:
                return get, set_
    return None


def throughput(ctx: dict, make_prompt: PromptMaker, rounds: int, prompt_len: int, new_tokens: int) -> dict:
    """Each ratio comes from a pair of points run back to back (1 and c, or 16 and 64), the pair's order
    alternating, the pairs' order rotating each round: the load other processes put on the cores changes
    by the second. Small batches are repeated so that each point runs for a similar time. Where numpy's
    OpenBLAS can be reached, the 1/16 and 1/64 pairs are run again with BLAS on one thread (a diagnosis:
    on shared cores a multi-threaded sgemm waits for its descheduled sibling)."""
    engine = new_engine(ctx["target"], ctx["limits"], enable_kv_cache_reuse=False)
    prompts = [make_prompt(prompt_len) for _ in range(max(CONCURRENCIES))]
    blas = openblas_threads()
    default_threads = blas[0]() if blas else None
    runs = iter(range(1 << 30))
    disturbed: list[dict] = []

    def point(c: int) -> dict:
        reps = max(1, 4 // c)
        pts = [throughput_point(engine, prompts[:c], new_tokens, f"t{next(runs)}") for _ in range(reps)]
        tot = {k: sum(x[k] for x in pts) for k in pts[0] if k != "step_rates"}
        # Steady-state decode rate: the median step, so a burst of load on the shared cores during a
        # few steps does not move it. The whole-run rates below include such bursts and the prefill.
        return {"decode_tok_s": med([r for x in pts for r in x["step_rates"]]),
                "decode_tok_s_mean": tot["decode_tokens"] / tot["decode_s"],
                "output_tok_s": tot["output_tokens"] / tot["total_s"],
                "total_tok_s": (tot["output_tokens"] + tot["prompt_tokens"]) / tot["total_s"],
                "decode_ms_per_step": 1000 * tot["decode_s"] / tot["decode_steps"], "reps": reps}

    def pair(a: int, b: int, flip: bool) -> dict[int, dict]:
        """Both points on a quiet machine: a pair during which other processes kept more than
        MAX_FOREIGN_CORES busy is run again (at most 3 tries; the last one is kept and counted)."""
        first, second = (b, a) if flip else (a, b)
        for attempt in range(3):
            wait_until_quiet()
            with ForeignLoad() as load:
                x = {first: point(first)}
                x[second] = point(second)
            if load.cores <= MAX_FOREIGN_CORES:
                break
            disturbed.append({"pair": [a, b], "foreign_cores": round(load.cores, 2), "redone": attempt < 2})
        return x

    pairs = [(1, c) for c in CONCURRENCIES[1:]] + [(16, 64)]
    points: dict[int, list[dict]] = {c: [] for c in CONCURRENCIES}
    ratio: dict[tuple, list[float]] = {p: [] for p in pairs}
    total_ratio: dict[tuple, list[float]] = {p: [] for p in pairs}
    ratio_1t: dict[tuple, list[float]] = {(1, 16): [], (1, 64): []}
    for r in range(rounds):
        for i, (a, b) in enumerate(pairs[r % len(pairs):] + pairs[: r % len(pairs)]):
            x = pair(a, b, flip=(r + i) % 2 == 1)
            ratio[(a, b)].append(x[b]["decode_tok_s"] / x[a]["decode_tok_s"])
            total_ratio[(a, b)].append(x[b]["total_tok_s"] / x[a]["total_tok_s"])
            for c in (a, b) if (a, b) != (16, 64) else ():
                points[c].append(x[c])
            if (a, b) in ratio_1t and blas and default_threads > 1:
                blas[1](1)
                try:
                    y = pair(a, b, flip=(r + i) % 2 == 1)
                finally:
                    blas[1](default_threads)
                ratio_1t[(a, b)].append(y[b]["decode_tok_s"] / y[a]["decode_tok_s"])
    res = {"points": points,
           "decode_ratio_vs_1": {1: [1.0] * rounds, **{c: ratio[(1, c)] for c in CONCURRENCIES[1:]}},
           "total_ratio_vs_1": {1: [1.0] * rounds, **{c: total_ratio[(1, c)] for c in CONCURRENCIES[1:]}},
           "decode_ratio_64_vs_16": ratio[(16, 64)], "prompt_len": prompt_len, "new_tokens": new_tokens,
           "blas_threads_default": default_threads, "disturbed_pairs": disturbed,
           "profile": {c: profile_decode(engine, prompts[:c], new_tokens) for c in (1, 16, 64)}}
    if ratio_1t[(1, 16)]:
        res["blas_1_thread"] = {"decode_ratio_vs_1": {16: ratio_1t[(1, 16)], 64: ratio_1t[(1, 64)]}}
    return res


def profile_decode(engine: Engine, prompts: list[list[int]], new_tokens: int) -> dict:
    """cProfile of one decode phase: self time per function in ms per decode step."""
    for i, p in enumerate(prompts):
        engine.add_request(EngineRequest(f"prof-{len(prompts)}-{i}", p, new_tokens, sampling=GREEDY))
    while any(s.num_output_tokens == 0 for s in engine.scheduler.running) or engine.scheduler.waiting:
        engine.step()
    prof, steps = cProfile.Profile(), 0
    prof.enable()
    while engine.has_unfinished_requests():
        engine.step()
        steps += 1
    prof.disable()
    stats = pstats.Stats(prof, stream=io.StringIO())
    per_fn = {f"{Path(f).name}:{line}({name})": 1000 * tt / steps for (f, line, name), (_, _, tt, _, _) in
              stats.stats.items()}
    return {"ms_per_step": 1000 * stats.total_tt / steps, "self_ms_per_step": per_fn}


# ---------------------------------------------------------------------------------------------------
# TTFT with a shared system prompt


def ttft(engine: Engine, rid: str, prompt: list[int], max_new_tokens: int = 4) -> float:
    """add_request -> the first step() output carrying a token; then run the request out."""
    t0 = time.perf_counter()
    engine.add_request(EngineRequest(rid, prompt, max_new_tokens, sampling=GREEDY))
    first = None
    while engine.has_unfinished_requests():
        outs = engine.step()
        if first is None and any(o.request_id == rid and o.new_token_ids for o in outs):
            first = time.perf_counter() - t0
    return first


def shared_system_prompt(ctx: dict, make_prompt: PromptMaker, rounds: int) -> dict:
    """Each round a new 512-token system prompt; reuse-on and reuse-off engines alternate going first."""
    engines = {True: new_engine(ctx["target"], ctx["limits"], enable_kv_cache_reuse=True),
               False: new_engine(ctx["target"], ctx["limits"], enable_kv_cache_reuse=False)}
    rows = {True: [], False: []}
    for r in range(rounds):
        system = make_prompt(512)
        users = [make_prompt(24), make_prompt(24)]
        for reuse in ((True, False) if r % 2 == 0 else (False, True)):
            e = engines[reuse]
            t1 = ttft(e, f"sys{r}-a", system + users[0])
            t2 = ttft(e, f"sys{r}-b", system + users[1])
            rows[reuse].append({"ttft_first_ms": 1000 * t1, "ttft_second_ms": 1000 * t2, "ratio": t1 / t2})
    return {"on": rows[True], "off": rows[False], "system_tokens": 512, "user_tokens": 24}


# ---------------------------------------------------------------------------------------------------
# Report


def plot(tp: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cs = list(CONCURRENCIES)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label in (("decode_tok_s", "output tok/s, steady-state decode"),
                       ("output_tok_s", "output tok/s, incl. prefill"), ("total_tok_s", "total (prompt+output) tok/s")):
        vals = [[x[key] for x in tp["points"][c]] for c in cs]
        m = [med(v) for v in vals]
        err = [[mi - min(v) for mi, v in zip(m, vals)], [max(v) - mi for mi, v in zip(m, vals)]]
        ax.errorbar(cs, m, yerr=err, marker="o", capsize=3, label=label)
    ax.set(xscale="log", yscale="log", xlabel="concurrent requests", ylabel="tokens/s",
           title="tiny-llama reference engine (median, min-max)")
    ax.set_xticks(cs, [str(c) for c in cs])
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    r = [tp["decode_ratio_vs_1"][c] for c in cs]
    ax2.errorbar(cs, [med(v) for v in r], yerr=[[med(v) - min(v) for v in r], [max(v) - med(v) for v in r]],
                 marker="o", capsize=3, label="decode tok/s ÷ 1-request tok/s run just before/after")
    ax2.axhline(4, color="red", linestyle="--", label="target at 16: 4x")
    ax2.set(xscale="log", xlabel="concurrent requests", ylabel="speed-up over 1 request",
            title="paired ratios (median, min-max over rounds)")
    ax2.set_xticks(cs, [str(c) for c in cs])
    ax2.legend(fontsize=8)
    ax2.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def targets_table(res: dict) -> list[dict]:
    ident, reuse, spec, tp, sysp = (res["identity_batched"], res["identity_reuse"], res["speculation"],
                                    res["throughput"], res["system_prompt"])
    kv = ident["kv_record"]
    kv_ok = all(x["ok"] and x["tables_match_pool"] for x in kv) and ident["kv_blocks_used_after"] == 0
    worst = max(kv, key=lambda x: x["slack"] / max(1, x["running"]))
    same, small = spec["draft = target"], spec["tiny-llama-draft"]
    r16, r64, r64_16 = tp["decode_ratio_vs_1"][16], tp["decode_ratio_vs_1"][64], tp["decode_ratio_64_vs_16"]
    on = [x["ratio"] for x in sysp["on"]]
    off = [x["ratio"] for x in sysp["off"]]
    n_spec = spec["draft = target"]["num_requests"]
    rows = [
        ("greedy identical, alone vs batched with 63 others",
         f"{ident['num_identical']}/{ident['num_requests']} identical",
         ident["num_identical"] == ident["num_requests"],
         f"64 prompts (16-300 tokens, real text), {res['params']['identity_new_tokens']} new tokens; each alone, "
         "then all 64 in one engine (chunked prefill + decode mixed); reuse off"),
        ("greedy identical, prefix reuse on vs off",
         f"{reuse['num_identical']}/{reuse['num_requests']} identical; {reuse['reused_tokens_on']} prompt tokens "
         f"reused (off: {reuse['reused_tokens_off']})",
         reuse["num_identical"] == reuse["num_requests"] and reuse["reused_tokens_on"] > 0,
         "512-token system prompt: 1 request alone, then 15 batched (incl. exact repeat and a follow-up turn)"),
        ("draft = target: 100% acceptance, same text",
         f"{same['acceptance_rate']:.1%} accepted, {same['num_identical']}/{n_spec} identical",
         same["acceptance_rate"] == 1.0 and same["num_identical"] == n_spec,
         f"k={SPEC_K} greedy proposals, target verifies prompt+generated with draft_token_ids, "
         f"{res['params']['spec_new_tokens']} new tokens x {n_spec} prompts"),
        ("small draft: lower acceptance, never a different text",
         f"{small['acceptance_rate']:.1%} accepted, {small['num_identical']}/{n_spec} identical",
         small["acceptance_rate"] < 1.0 and small["num_identical"] == n_spec,
         "same loop, draft = tiny-llama-draft (independent random weights: it agrees with the target "
         "only by chance)"),
        ("throughput at 16 >= 4x one request",
         f"{spread(r16)}x", med(r16) >= 4.0,
         f"decode output tok/s (median step), 16 vs 1 run back to back; {len(r16)} rounds; prompt "
         f"{tp['prompt_len']} + {tp['new_tokens']} new; prefill steps excluded (see throughput table)"),
        ("throughput at 64 higher still",
         f"64 vs 1: {spread(r64)}x; 64 vs 16: {spread(r64_16)}x", med(r64_16) > 1.0,
         "64 vs 16 likewise from its own back-to-back pair"),
        *([] if "blas_1_thread" not in tp else [(
            "  diagnosis: same, BLAS on 1 thread",
            f"16 vs 1: {spread(tp['blas_1_thread']['decode_ratio_vs_1'][16])}x; 64 vs 1: "
            f"{spread(tp['blas_1_thread']['decode_ratio_vs_1'][64])}x",
            None, "openblas_set_num_threads(1) around a second 1/16 and 1/64 pair right after the default pair "
                  f"(default {tp['blas_threads_default']} threads on {os.cpu_count()} shared cores)")]),
        ("KV: allocated - held < 1 block per running seq",
         f"{sum(x['ok'] for x in kv)}/{len(kv)} steps ok; worst {worst['slack']} slots over "
         f"{worst['running']} seqs; max per-seq slack {max(x['max_seq_slack'] for x in kv)}",
         kv_ok,
         "after every step of the 64-request batched run: stats() kv_blocks_used*32 - sum(num_computed_tokens) "
         "< running*32; also pool count == block tables' blocks and 0 used after"),
        ("512-token shared system prompt: TTFT 2nd >= 5x lower (reuse on)",
         f"{spread(on, '.1f')}x ({med([x['ttft_first_ms'] for x in sysp['on']]):.1f} -> "
         f"{med([x['ttft_second_ms'] for x in sysp['on']]):.1f} ms)", med(on) >= 5.0,
         "step() loop from add_request to first token; new system prompt per round; 24-token user turns"),
        ("  same, reuse off (for reference)",
         f"{spread(off, '.2f')}x ({med([x['ttft_first_ms'] for x in sysp['off']]):.1f} -> "
         f"{med([x['ttft_second_ms'] for x in sysp['off']]):.1f} ms)", None, "same rounds, interleaved"),
        ("speculation, draft = target",
         f"acceptance {same['acceptance_rate']:.1%}, {same['tokens_per_target_step']:.2f} tokens/target step",
         None, "tokens/target step = new tokens / target step() calls; histogram "
         f"{same['accept_counts']}"),
        ("speculation, tiny-llama-draft",
         f"acceptance {small['acceptance_rate']:.1%}, {small['tokens_per_target_step']:.2f} tokens/target step",
         None, f"accept_counts histogram {small['accept_counts']}"),
    ]
    return [{"target": t, "measured": m, "result": "info" if ok is None else verdict(ok), "how": h}
            for t, m, ok, h in rows]


def write_report(res: dict, out: Path) -> None:
    table = res["targets"]
    tp = res["throughput"]
    lines = ["# Reference engine targets (tiny-llama, in process)", "",
             f"`{res['params']['command']}`, {res['params']['seconds']:.0f} s, {os.cpu_count()} cores shared "
             f"(load average {res['params']['loadavg_start']} at start, {res['params']['loadavg_end']} at end). "
             "Each ratio is taken between two measurements run back to back; the median over rounds is reported. "
             f"Each throughput pair starts when the cores are idle; pairs during which other processes kept more than "
             f"{MAX_FOREIGN_CORES} of a core busy were redone ({len(tp['disturbed_pairs'])} such pairs).", "",
             "| target | measured | pass/fail | how |", "|---|---|---|---|"]
    lines += [f"| {r['target']} | {r['measured']} | {r['result']} | {r['how']} |" for r in table]
    lines += ["", "## Throughput vs concurrency (median over all points)", "",
              "Prefill counting: a point's prefill phase lasts until every request has its first token; those "
              "steps (and the first tokens) are excluded from *decode tok/s*, which is the median decode step's "
              "rate (robust to load bursts from other processes). *Output tok/s* and *total tok/s* "
              "(prompt + output tokens) divide by the whole run, prefill included. Reuse off; distinct prompts.", "",
              "| requests | decode tok/s | x vs 1 (paired) | mean ms/decode step | output tok/s | total tok/s |",
              "|---:|---:|---:|---:|---:|---:|"]
    for c in CONCURRENCIES:
        col = lambda k: med([x[k] for x in tp["points"][c]])  # noqa: E731
        lines.append(f"| {c} | {col('decode_tok_s'):.0f} | {med(tp['decode_ratio_vs_1'][c]):.2f} | "
                     f"{col('decode_ms_per_step'):.1f} | {col('output_tok_s'):.0f} | {col('total_tok_s'):.0f} |")
    prof = tp["profile"]
    top = sorted(prof[16]["self_ms_per_step"], key=lambda f: -prof[16]["self_ms_per_step"][f])[:10]
    lines += ["", "## Where a decode step's time goes (cProfile self time, ms per step; under the profiler)", "",
              "| function | 1 request | 16 requests | 64 requests |", "|---|---:|---:|---:|"]
    lines += [f"| {f} | " + " | ".join(f"{prof[c]['self_ms_per_step'].get(f, 0.0):.2f}" for c in (1, 16, 64)) + " |"
              for f in top]
    lines += ["| **whole step** | " + " | ".join(f"**{prof[c]['ms_per_step']:.2f}**" for c in (1, 16, 64)) + " |"]
    share = {c: {group: sum(ms for f, ms in prof[c]["self_ms_per_step"].items() if f.split(":")[0] in files)
                     / prof[c]["ms_per_step"] for group, files in PROFILE_GROUPS.items()} for c in (1, 16, 64)}
    lines += ["", "Self time by group (share of a step): " + "; ".join(
        f"{c} request{'s' * (c > 1)}: " + ", ".join(f"{g} {share[c][g]:.0%}" for g in PROFILE_GROUPS)
        for c in (1, 16, 64)) + ". model.py's `linear` owns the weight matmuls (qkv/o, gate_up/down, lm_head); "
        "`decoder_layer` the KV gather; `attention` and `softmax` the attention math."]
    lines += ["", "![throughput](engine-throughput.png)", ""]
    (out / "engine-targets.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="rounds of throughput pairs (TTFT: twice as many)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--cache-dir", type=Path, help="artifact cache to build into (default: a temp dir)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start, load0 = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = build(args.cache_dir or Path(tmp))
        make_prompt = PromptMaker(ctx["tokenizer"], seed=0)
        res: dict = {}
        step = lambda name: print(f"[{time.perf_counter() - t_start:6.1f}s] {name}", flush=True)  # noqa: E731

        step("greedy identity: alone vs batched with 63 others, KV accounting")
        gen = np.random.default_rng(1)
        id_prompts = [make_prompt(int(gen.integers(16, 300))) for _ in range(64)]
        res["identity_batched"] = identity_alone_vs_batched(ctx, id_prompts, new_tokens=48)
        step("greedy identity: prefix reuse on vs off")
        res["identity_reuse"] = identity_prefix_reuse(ctx, make_prompt, new_tokens=24)
        step("speculative decoding")
        spec_prompts = id_prompts[:8]
        refs = res["identity_batched"]["alone"][:8]
        res["speculation"] = speculation(ctx, spec_prompts, refs, new_tokens=48)
        step("TTFT with a shared 512-token system prompt")
        res["system_prompt"] = shared_system_prompt(ctx, make_prompt, 2 * args.rounds)  # ~0.5 s a round
        step("throughput vs concurrency")
        res["throughput"] = throughput(ctx, make_prompt, args.rounds, prompt_len=128, new_tokens=64)
    step("writing results")
    res["params"] = {"command": " ".join(["python -m bench.engine_targets", *(sys.argv[1:] if argv is None else argv)]),
                     "rounds": args.rounds, "identity_new_tokens": 48, "spec_new_tokens": 48, "spec_k": SPEC_K,
                     "limits": {k: v for k, v in vars(ctx["limits"]).items()},
                     "seconds": time.perf_counter() - t_start, "cpu_count": os.cpu_count(),
                     "loadavg_start": [round(x, 2) for x in load0],
                     "loadavg_end": [round(x, 2) for x in os.getloadavg()]}
    res["identity_batched"].pop("alone")
    res["targets"] = targets_table(res)
    kv = res["identity_batched"].pop("kv_record")
    res["identity_batched"].update(
        kv_steps=len(kv), kv_steps_ok=sum(x["ok"] and x["tables_match_pool"] for x in kv),
        kv_worst_slack_slots_per_seq=max(x["slack"] / max(1, x["running"]) for x in kv))
    plot(res["throughput"], args.out / "engine-throughput.png")
    write_report(res, args.out)
    (args.out / "engine-targets.json").write_text(json.dumps(res, indent=2) + "\n")  # int keys become strings
    for r in res["targets"]:
        print(f"{r['result']:>5}  {r['target']}: {r['measured']}")
    return res


if __name__ == "__main__":
    main()
