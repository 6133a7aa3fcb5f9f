"""What guided decoding costs the reference engine per step, and what a schema costs to compile once.

In one process, on tiny-llama's synthetic checkpoint (its real byte-level BPE tokenizer, vocab 1024):
- engine steps: B sequences decoding at temperature 1, all guided by a JSON schema vs none guided, in
  alternating rounds (A B B A ...) so that drift on a shared machine falls on both sides alike; the ratio of
  the median step times is the per-step cost of the mask (compute the bitmask, apply it, advance the matcher);
- the mask alone: `GrammarState.allowed()` per call;
- compiling: a schema's first compile (a new compiler, so nothing is cached) and a cached lookup.

    .venv/bin/python -m bench.grammar_step_cost                 # about a minute
    .venv/bin/python -m bench.grammar_step_cost --batch 1,16 --rounds 4

Writes bench/results/grammar-step-cost.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from trtpipe.engine import Engine, EngineLimits, EngineRequest, SamplingParams, convert_checkpoint
from trtpipe.engine.grammar import GrammarCompiler
from trtpipe.stages.synthetic import write_synthetic_checkpoint

OUT = Path(__file__).resolve().parent / "results"
# Long enough outputs that every sequence is still decoding when a round's measured steps end.
SCHEMA = {"type": "object", "required": ["title", "notes", "score"], "additionalProperties": False,
          "properties": {"title": {"type": "string", "maxLength": 40},
                         "notes": {"type": "array", "minItems": 12, "maxItems": 12,
                                   "items": {"type": "string", "maxLength": 24}},
                         "score": {"type": "integer", "minimum": 0, "maximum": 100}}}
PROMPT = [0, 2, 17, 250, 31, 99, 7, 3]


def step_times(engine_dir: Path, grammars: GrammarCompiler | None, batch: int, num_steps: int,
               seed: int) -> list[float]:
    """Seconds per decode step with `batch` sequences running (the prefill step is not counted)."""
    engine = Engine.from_dir(engine_dir, EngineLimits(max_batch_size=64, max_seq_len=1024, tokens_per_block=16))
    for i in range(batch):
        grammar = grammars.compile("json_schema", json.dumps(SCHEMA)).new_state() if grammars else None
        engine.add_request(EngineRequest(f"r{i}", PROMPT + [i], num_steps + 8, end_id=4, grammar=grammar,
                                         sampling=SamplingParams(temperature=1.0, seed=seed + i)))
    engine.step()  # prefill
    times = []
    for _ in range(num_steps):
        t = time.perf_counter()
        outs = engine.step()
        times.append(time.perf_counter() - t)
        if len(outs) < batch:
            break
    return times


def mask_cost_us(grammars: GrammarCompiler, n: int = 2000) -> float:
    state = grammars.compile("json_schema", json.dumps(SCHEMA)).new_state()
    t = time.perf_counter()
    for _ in range(n):
        state.allowed()
    return (time.perf_counter() - t) / n * 1e6


def compile_cost_ms(tokenizer_dir: Path, vocab: int, repeats: int = 5) -> tuple[float, float, float]:
    """(first compile of a schema in a new compiler, a cached lookup, building the compiler) in ms, medians."""
    first, cached, build = [], [], []
    for i in range(repeats):
        t = time.perf_counter()
        grammars = GrammarCompiler.from_tokenizer_dir(tokenizer_dir, vocab)
        build.append(time.perf_counter() - t)
        schema = json.dumps({**SCHEMA, "title": f"run {i}"})
        t = time.perf_counter()
        grammars.compile("json_schema", schema)
        first.append(time.perf_counter() - t)
        t = time.perf_counter()
        grammars.compile("json_schema", schema)
        cached.append(time.perf_counter() - t)
    return statistics.median(first) * 1e3, statistics.median(cached) * 1e3, statistics.median(build) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", default="1,16")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_synthetic_checkpoint("tiny-llama", root / "hf")
        convert_checkpoint(root / "hf", root / "engine")
        vocab = json.loads((root / "hf" / "config.json").read_text())["vocab_size"]
        grammars = GrammarCompiler.from_tokenizer_dir(root / "hf", vocab)
        points = []
        for batch in [int(b) for b in args.batch.split(",")]:
            sides: dict[str, list[float]] = {"plain": [], "guided": []}
            for r in range(args.rounds):
                order = ("plain", "guided") if r % 2 == 0 else ("guided", "plain")
                for side in order:
                    sides[side] += step_times(root / "engine", grammars if side == "guided" else None, batch,
                                              args.steps, seed=100 * r)
            plain, guided = statistics.median(sides["plain"]), statistics.median(sides["guided"])
            points.append({"batch": batch, "plain_step_ms": plain * 1e3, "guided_step_ms": guided * 1e3,
                           "guided_over_plain": guided / plain,
                           "added_ms_per_guided_sequence_step": (guided - plain) * 1e3 / batch,
                           "num_steps": {k: len(v) for k, v in sides.items()}})
            print(f"batch {batch}: plain {plain * 1e3:.2f} ms/step, guided {guided * 1e3:.2f} ms/step "
                  f"({guided / plain:.2f}x)")
        mask_us = mask_cost_us(grammars)
        first_ms, cached_ms, build_ms = compile_cost_ms(root / "hf", vocab)
    result = {"model": "tiny-llama (synthetic, vocab %d)" % vocab, "schema": SCHEMA, "steps": points,
              "mask_us_per_call": mask_us, "compile_first_ms": first_ms, "compile_cached_ms": cached_ms,
              "compiler_build_ms": build_ms,
              "note": "2-core machine shared with other jobs; sides interleaved A B B A per round; medians."}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grammar-step-cost.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Guided decoding in the reference engine: cost per step and compile cost", "",
             f"`bench/grammar_step_cost.py`, {result['model']}, sampling at temperature 1, one JSON schema "
             "(bench/grammar_step_cost.py `SCHEMA`). Shared 2-core machine: sides interleaved, medians; read the "
             "ratios, not the absolute times.", "",
             "| running sequences | plain ms/step | guided ms/step | guided / plain | "
             "added ms per guided sequence-step |",
             "| --- | --- | --- | --- | --- |"]
    for p in points:
        lines.append(f"| {p['batch']} | {p['plain_step_ms']:.2f} | {p['guided_step_ms']:.2f} | "
                     f"{p['guided_over_plain']:.2f}x | {p['added_ms_per_guided_sequence_step']:.3f} |")
    lines += ["", f"- mask alone (`GrammarState.allowed()`): {mask_us:.1f} us per call",
              f"- first compile of the schema: {first_ms:.2f} ms; a cached lookup: {cached_ms:.4f} ms",
              f"- building the compiler from tokenizer.json (once per model): {build_ms:.1f} ms", ""]
    (args.out / "grammar-step-cost.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
