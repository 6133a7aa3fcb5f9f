"""The reference engine against Hugging Face transformers on the same stories15M-shaped checkpoint.

Random fp32 weights shaped like stories15M (dim 288, 6 layers, 6 heads, ffn 768, vocab 32000), written as
real safetensors + config.json, loaded by `LlamaForCausalLM.from_pretrained` and, after trtpipe's own
`convert_checkpoint`, by `trtpipe.engine.Engine`. Greedy, 16 prompt + 64 new tokens, 2 BLAS threads each:
batch 1 (prompts one after another) and 16 requests at once (transformers: one static batch; the engine:
16 concurrent requests). Each side runs in its own process, the sides alternate, and every round measures
all of them back to back, so a ratio is taken within one round. The greedy tokens of every side are checked
against transformers'. Nothing is downloaded.

torch and transformers are the optional `bench` extra (`pip install -e ".[bench]"`), never needed by the tests.

    .venv/bin/python bench/engine_vs_transformers.py                      # writes bench/results/engine-vs-transformers.*
    # the engine of an older commit too, in the same rounds:
    git archive b30211f pipeline | tar -x -C /tmp/trtpipe-base
    .venv/bin/python bench/engine_vs_transformers.py --baseline-src /tmp/trtpipe-base/pipeline --baseline-name b30211f
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine_load import wait_until_quiet

HF_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000, "hidden_size": 288,
    "intermediate_size": 768, "num_hidden_layers": 6, "num_attention_heads": 6, "num_key_value_heads": 6,
    "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
    "hidden_act": "silu", "torch_dtype": "float32",
}
PROMPT_LEN, NEW_TOKENS, THREADS = 16, 64, 2
# The machine is shared: start each process on idle cores, and redo it when other processes kept more than this
# many cores busy during its best repetition.
QUIET_IDLE, QUIET_TIMEOUT_S, MAX_FOREIGN_CORES, MAX_ATTEMPTS = 0.85, 180.0, 0.25, 4
RESULTS = Path(__file__).resolve().parent / "results"


def write_checkpoint(d: Path, seed: int = 0) -> None:
    from safetensors.numpy import save_file

    cfg, rng = HF_CONFIG, np.random.default_rng(seed)
    h, inter, v, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]

    def lin(o: int, i: int, scale: float = 1.0) -> np.ndarray:
        return (scale * rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)

    # lm_head scaled up so greedy argmaxes are far from ties (fp32 summation order differs between the two).
    t = {"model.embed_tokens.weight": rng.standard_normal((v, h)).astype(np.float32),
         "model.norm.weight": np.ones(h, np.float32), "lm_head.weight": lin(v, h, 4.0)}
    for i in range(n):
        p = f"model.layers.{i}."
        t |= {p + "input_layernorm.weight": (1 + 0.1 * rng.standard_normal(h)).astype(np.float32),
              p + "post_attention_layernorm.weight": (1 + 0.1 * rng.standard_normal(h)).astype(np.float32),
              p + "self_attn.q_proj.weight": lin(h, h), p + "self_attn.k_proj.weight": lin(h, h),
              p + "self_attn.v_proj.weight": lin(h, h), p + "self_attn.o_proj.weight": lin(h, h),
              p + "mlp.gate_proj.weight": lin(inter, h), p + "mlp.up_proj.weight": lin(inter, h),
              p + "mlp.down_proj.weight": lin(h, inter)}
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg))
    save_file(t, str(d / "model.safetensors"))


# --- workers: one side, one batch size, a few timed repetitions; JSON on stdout -------------------------------
def run_transformers(ckpt: Path, prompts: list[list[int]], batch: int, reps: int) -> tuple[list[float], list]:
    import torch
    from transformers import LlamaForCausalLM

    torch.set_num_threads(THREADS)
    model = LlamaForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()
    kw = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0)

    def gen(group: list[list[int]]) -> list[list[int]]:
        ids = torch.tensor(group)
        out = model.generate(ids, attention_mask=torch.ones_like(ids), **kw)
        return out[:, ids.shape[1]:].tolist()

    with torch.inference_mode():
        gen(prompts[:batch])  # warm-up
        return _timed(lambda: [t for g in _groups(prompts, batch) for t in gen(g)], reps)


def run_engine(engine_dir: Path, prompts: list[list[int]], batch: int, reps: int) -> tuple[list[float], list]:
    from trtpipe.engine import Engine, EngineLimits, SamplingParams

    limits = EngineLimits(max_batch_size=16, max_num_tokens=2048, max_seq_len=256, tokens_per_block=32,
                          max_tokens_in_paged_kv_cache=16 * 256)
    engine = Engine.from_dir(engine_dir, limits)
    greedy = SamplingParams(temperature=0.0)
    engine.generate(prompts[:batch], 4, greedy)  # warm-up
    return _timed(lambda: [t for g in _groups(prompts, batch) for t in engine.generate(g, NEW_TOKENS, greedy)], reps)


def _groups(prompts: list[list[int]], batch: int) -> list[list[list[int]]]:
    return [prompts[i:i + batch] for i in range(0, len(prompts), batch)]


def _timed(fn, reps: int) -> tuple[list[float], list[float], list]:
    from machine_load import ForeignLoad

    rates, foreign, tokens = [], [], None
    for _ in range(reps):
        with ForeignLoad() as load:
            t0 = time.perf_counter()
            tokens = fn()
            elapsed = time.perf_counter() - t0
        rates.append(sum(len(t) for t in tokens) / elapsed)
        foreign.append(load.cores)
    return rates, foreign, tokens


def worker(args) -> None:
    prompts = json.loads(Path(args.prompts).read_text())
    prompts = prompts[:args.num_prompts]
    if args.worker == "transformers":
        rates, foreign, tokens = run_transformers(Path(args.ckpt), prompts, args.batch, args.reps)
    else:
        import trtpipe
        rates, foreign, tokens = run_engine(Path(args.engine_dir), prompts, args.batch, args.reps)
        print(f"# trtpipe from {Path(trtpipe.__file__).parent}", file=sys.stderr)
    print(json.dumps({"tok_s": rates, "foreign_cores": foreign, "tokens": tokens}))


# --- the driver ------------------------------------------------------------------------------------------------
def spawn(side: str, src: str | None, tmp: Path, batch: int, reps: int, num_prompts: int) -> dict:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(THREADS), "OMP_NUM_THREADS": str(THREADS),
           "MKL_NUM_THREADS": str(THREADS)}
    if src:
        env["PYTHONPATH"] = src
    cmd = [sys.executable, __file__, "--worker", "transformers" if side == "transformers" else "engine",
           "--ckpt", str(tmp / "hf"), "--engine-dir", str(tmp / "engine"), "--prompts", str(tmp / "prompts.json"),
           "--batch", str(batch), "--reps", str(reps), "--num-prompts", str(num_prompts)]
    for attempt in range(MAX_ATTEMPTS):
        wait_until_quiet(min_idle=QUIET_IDLE, timeout_s=QUIET_TIMEOUT_S)
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"{side} batch {batch} failed:\n{out.stderr[-3000:]}")
        if src and src not in out.stderr:
            raise SystemExit(f"{side} did not import trtpipe from {src}: {out.stderr[-500:]}")
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res["attempts"] = attempt + 1
        # The best repetition is the one reported; redo the process if even that one shared the cores.
        if res["foreign_cores"][int(np.argmax(res["tok_s"]))] <= MAX_FOREIGN_CORES:
            return res
    return res


def first_mismatches(ref: list[list[int]], got: list[list[int]]) -> list[int | None]:
    """Per sequence: index of the first token that differs from ref, None if all agree."""
    return [next((i for i, (a, b) in enumerate(zip(r, g)) if a != b), None if len(r) == len(g) else min(len(r), len(g)))
            for r, g in zip(ref, got, strict=True)]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per process")
    ap.add_argument("--batch1-prompts", type=int, default=4, help="prompts run one after another at batch 1")
    ap.add_argument("--baseline-src", help="a directory holding another trtpipe package (its engine is measured too)")
    ap.add_argument("--baseline-name", default="baseline")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--worker", choices=["transformers", "engine"], help=argparse.SUPPRESS)
    for hidden in ("--ckpt", "--engine-dir", "--prompts"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--num-prompts", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)

    from trtpipe.engine import convert_checkpoint

    sides = ["transformers", "engine"] + ([f"engine@{args.baseline_name}"] if args.baseline_src else [])
    srcs = {"transformers": None, "engine": str(Path(__file__).resolve().parents[1] / "pipeline"),
            f"engine@{args.baseline_name}": args.baseline_src}
    batches = {1: args.batch1_prompts, 16: 16}
    runs: dict = {s: {b: [] for b in batches} for s in sides}
    tokens: dict = {s: {} for s in sides}
    load = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        write_checkpoint(tmp / "hf")
        convert_checkpoint(tmp / "hf", tmp / "engine", dtype="float32")
        rng = np.random.default_rng(1)
        (tmp / "prompts.json").write_text(json.dumps(rng.integers(1, 32000, (16, PROMPT_LEN)).tolist()))
        for r in range(args.rounds):
            order = sides if r % 2 == 0 else sides[::-1]
            for batch, n in batches.items():
                for side in order:
                    load.append(os.getloadavg()[0])
                    res = spawn(side, srcs[side], tmp, batch, args.reps, n)
                    runs[side][batch].append(res)
                    tokens[side][batch] = res["tokens"]
                    print(f"round {r} batch {batch:>2} {side:>20}: "
                          + " ".join(f"{x:7.1f}" for x in res["tok_s"]) + " tok/s, foreign cores "
                          + " ".join(f"{x:.2f}" for x in res["foreign_cores"]) + f", attempts {res['attempts']}",
                          flush=True)
    return report(args, sides, batches, runs, tokens, load)


def report(args, sides, batches, runs, tokens, load) -> dict:
    def best(res: dict) -> float:  # the best repetition of a process: least disturbed by the shared machine
        return max(res["tok_s"])

    summary: dict = {"model": HF_CONFIG, "prompt_len": PROMPT_LEN, "new_tokens": NEW_TOKENS, "threads": THREADS,
                     "rounds": args.rounds, "reps": args.reps, "loadavg_1m": [round(x, 2) for x in load],
                     "command": "python bench/engine_vs_transformers.py " + " ".join(sys.argv[1:]), "batches": {}}
    for batch in batches:
        row: dict = {}
        for side in sides:
            per_round = [best(x) for x in runs[side][batch]]
            row[side] = {"tok_s_per_round": [round(x, 1) for x in per_round],
                         "tok_s_median": round(statistics.median(per_round), 1),
                         "foreign_cores_of_best_rep": [round(x["foreign_cores"][int(np.argmax(x["tok_s"]))], 2)
                                                       for x in runs[side][batch]],
                         "attempts": [x["attempts"] for x in runs[side][batch]]}
            if side != "transformers":
                ratios = [e / t for e, t in zip(per_round, row["transformers"]["tok_s_per_round"])]
                row[side]["ratio_to_transformers_per_round"] = [round(x, 2) for x in ratios]
                row[side]["ratio_to_transformers_median"] = round(statistics.median(ratios), 2)
                mism = first_mismatches(tokens["transformers"][batch], tokens[side][batch])
                row[side]["greedy_sequences_equal"] = sum(m is None for m in mism)
                row[side]["greedy_first_mismatch"] = mism
        row["num_sequences"] = len(tokens["transformers"][batch])
        summary["batches"][str(batch)] = row
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "engine-vs-transformers.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "engine-vs-transformers.md").write_text(markdown(summary, sides))
    plot(summary, sides, args.out / "engine-vs-transformers.png")
    print(markdown(summary, sides))
    return summary


def markdown(s: dict, sides: list[str]) -> str:
    m = s["model"]
    lines = [
        "# Reference engine vs transformers (CPU, greedy)",
        "",
        f"Random fp32 weights shaped like stories15M (dim {m['hidden_size']}, {m['num_hidden_layers']} layers, "
        f"{m['num_attention_heads']} heads, ffn {m['intermediate_size']}, vocab {m['vocab_size']}); "
        f"{s['prompt_len']} prompt + {s['new_tokens']} new tokens, {s['threads']} threads each. Batch 1: prompts one "
        "after another; 16: transformers as one static batch, the engine as 16 concurrent requests. Per process the "
        f"best of {s['reps']} repetitions; {s['rounds']} rounds alternating the sides; the ratio is taken within each "
        "round, the median shown. A shared, noisy 2-core machine: 1-minute load average during the run "
        f"{min(s['loadavg_1m']):.2f}-{max(s['loadavg_1m']):.2f}.",
        "",
        f"Command: `{s['command']}`",
        "",
        "| batch | side | output tok/s (median) | per round | x transformers (median) | per round | greedy = transformers |",
        "| --- | --- | ---: | --- | ---: | --- | --- |",
    ]
    for batch, row in s["batches"].items():
        for side in sides:
            r = row[side]
            ratio = r.get("ratio_to_transformers_median")
            lines.append(f"| {batch} | {side} | {r['tok_s_median']:.0f} | {', '.join(f'{x:.0f}' for x in r['tok_s_per_round'])} | "
                         + (f"{ratio:.2f} | {', '.join(f'{x:.2f}' for x in r['ratio_to_transformers_per_round'])} | "
                            f"{r['greedy_sequences_equal']}/{row['num_sequences']} |" if ratio is not None else "1 | | |"))
    return "\n".join(lines) + "\n"


def plot(s: dict, sides: list[str], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = list(s["batches"])
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(sides)
    for i, side in enumerate(sides):
        vals = [s["batches"][b][side]["tok_s_median"] for b in batches]
        bars = ax.bar(np.arange(len(batches)) + i * width, vals, width, label=side)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks(np.arange(len(batches)) + width * (len(sides) - 1) / 2, [f"batch {b}" for b in batches])
    ax.set_ylabel("output tokens/s (median of rounds)")
    ax.set_title("stories15M-shaped fp32, greedy, 16+64 tokens, 2 threads")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
