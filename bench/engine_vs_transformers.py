"""The reference engine against Hugging Face transformers on the same stories15M-shaped checkpoint.

Random fp32 weights shaped like stories15M (dim 288, 6 layers, 6 heads, ffn 768, vocab 32000), written as
real safetensors + config.json, loaded by `LlamaForCausalLM.from_pretrained` and, after trtpipe's own
`convert_checkpoint`, by `trtpipe.engine.Engine`. Greedy, 16 prompt + 64 new tokens, 2 BLAS threads each:
batch 1 (prompts one after another) and 16 requests at once (transformers: one static batch; the engine:
16 concurrent requests). Each side runs in its own long-lived process; every round runs each side once,
back to back, in alternating order, so a ratio is taken within one round and slow drifts in the load of the
shared machine hit both sides alike. The greedy tokens of every side are checked against transformers'.
Nothing is downloaded.

torch and transformers are the optional `bench` extra (`pip install -e ".[bench]"`), never needed by the tests.

    .venv/bin/python -m bench.engine_vs_transformers                     # writes bench/results/engine-vs-transformers.*
    # the engine of an older commit too, in the same rounds:
    git archive b30211f pipeline | tar -x -C /tmp/trtpipe-base
    .venv/bin/python -m bench.engine_vs_transformers --baseline-src /tmp/trtpipe-base/pipeline --baseline-name b30211f
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

HF_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000, "hidden_size": 288,
    "intermediate_size": 768, "num_hidden_layers": 6, "num_attention_heads": 6, "num_key_value_heads": 6,
    "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
    "hidden_act": "silu", "torch_dtype": "float32",
}
PROMPT_LEN, NEW_TOKENS, THREADS = 16, 64, 2
SETTLE_S = 0.5
QUIET_FOREIGN_CORES = 0.3  # a round counts as quiet when other processes kept at most this many cores busy
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


# --- workers: one side, both batch sizes, kept alive; one timed repetition per command -----------------------
def transformers_runner(ckpt: Path):
    import torch
    from transformers import LlamaForCausalLM

    torch.set_num_threads(THREADS)
    model = LlamaForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()
    kw = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0)

    def gen(group: list[list[int]]) -> list[list[int]]:
        ids = torch.tensor(group)
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), **kw)
        return out[:, ids.shape[1]:].tolist()

    return gen


def engine_runner(engine_dir: Path):
    from trtpipe.engine import Engine, EngineLimits, SamplingParams

    limits = EngineLimits(max_batch_size=16, max_num_tokens=2048, max_seq_len=256, tokens_per_block=32,
                          max_tokens_in_paged_kv_cache=16 * 256)
    engine = Engine.from_dir(engine_dir, limits)
    greedy = SamplingParams(temperature=0.0)
    return lambda group: engine.generate(group, NEW_TOKENS, greedy)


def worker(args) -> None:
    """Reads `BATCH NUM_PROMPTS` lines; answers each with one timed repetition as a JSON line."""
    from machine_load import ForeignLoad

    prompts = json.loads(Path(args.prompts).read_text())
    if args.worker == "transformers":
        gen = transformers_runner(Path(args.ckpt))
    else:
        import trtpipe
        gen = engine_runner(Path(args.engine_dir))
        print(f"# trtpipe from {Path(trtpipe.__file__).parent}", file=sys.stderr, flush=True)
    for b in (1, 16):
        gen(prompts[:b])  # warm-up at both sizes
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        batch, n = map(int, line.split())
        with ForeignLoad() as load:
            t0 = time.perf_counter()
            tokens = [t for i in range(0, n, batch) for t in gen(prompts[i:i + batch])]
            elapsed = time.perf_counter() - t0
        print(json.dumps({"tok_s": sum(map(len, tokens)) / elapsed, "foreign_cores": load.cores,
                          "tokens": tokens}), flush=True)


# --- the driver ------------------------------------------------------------------------------------------------
class Worker:
    def __init__(self, side: str, src: str | None, tmp: Path):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": str(THREADS), "OMP_NUM_THREADS": str(THREADS),
               "MKL_NUM_THREADS": str(THREADS)}
        if src:
            env["PYTHONPATH"] = src
        cmd = [sys.executable, __file__, "--worker", "transformers" if side == "transformers" else "engine",
               "--ckpt", str(tmp / "hf"), "--engine-dir", str(tmp / "engine"), "--prompts", str(tmp / "prompts.json")]
        self.side, self.src = side, src
        self.log = open(tmp / f"{side}.stderr", "w+")
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True)
        self._read()  # loaded and warmed up
        self.log.seek(0)
        if src and src not in self.log.read():
            raise SystemExit(f"{side} did not import trtpipe from {src}")

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.log.seek(0)
            raise SystemExit(f"{self.side} worker died:\n{self.log.read()[-3000:]}")
        return json.loads(line)

    def run(self, batch: int, num_prompts: int) -> dict:
        self.proc.stdin.write(f"{batch} {num_prompts}\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


def first_mismatches(ref: list[list[int]], got: list[list[int]]) -> list[int | None]:
    """Per sequence: index of the first token that differs from ref, None if all agree."""
    return [next((i for i, (a, b) in enumerate(zip(r, g)) if a != b), None if len(r) == len(g) else min(len(r), len(g)))
            for r, g in zip(ref, got, strict=True)]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8, help="repetitions of every side and batch size, interleaved")
    ap.add_argument("--batch1-prompts", type=int, default=4, help="prompts run one after another at batch 1")
    ap.add_argument("--baseline-src", help="a directory holding another trtpipe package (its engine is measured too)")
    ap.add_argument("--baseline-name", default="baseline")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--worker", choices=["transformers", "engine"], help=argparse.SUPPRESS)
    for hidden in ("--ckpt", "--engine-dir", "--prompts"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
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
        workers = {side: Worker(side, srcs[side], tmp) for side in sides}
        try:
            for r in range(args.rounds):
                order = sides if r % 2 == 0 else sides[::-1]
                for batch, n in batches.items():
                    for side in order:
                        time.sleep(SETTLE_S)  # the previous side's BLAS/OpenMP threads stop spinning
                        load.append(os.getloadavg()[0])
                        res = workers[side].run(batch, n)
                        runs[side][batch].append(res)
                        tokens[side][batch] = res["tokens"]
                        print(f"round {r:2d} batch {batch:>2} {side:>20}: {res['tok_s']:7.1f} tok/s, "
                              f"foreign cores {res['foreign_cores']:.2f}", flush=True)
        finally:
            for w in workers.values():
                w.close()
    return report(args, sides, batches, runs, tokens, load)


def report(args, sides, batches, runs, tokens, load) -> dict:
    summary: dict = {"model": HF_CONFIG, "prompt_len": PROMPT_LEN, "new_tokens": NEW_TOKENS, "threads": THREADS,
                     "rounds": args.rounds, "loadavg_1m": [round(x, 2) for x in load],
                     "command": "python -m bench.engine_vs_transformers " + " ".join(sys.argv[1:]), "batches": {}}
    for batch in batches:
        row: dict = {}
        for side in sides:
            rates = [x["tok_s"] for x in runs[side][batch]]
            row[side] = {"tok_s_per_round": [round(x, 1) for x in rates], "tok_s_median": round(statistics.median(rates), 1),
                         "tok_s_best": round(max(rates), 1),
                         "foreign_cores_per_round": [round(x["foreign_cores"], 2) for x in runs[side][batch]]}
            if side != "transformers":
                ref = [x["tok_s"] for x in runs["transformers"][batch]]
                ratios = [e / t for e, t in zip(rates, ref)]
                row[side] |= {"ratio_per_round": [round(x, 2) for x in ratios],
                              "ratio_median": round(statistics.median(ratios), 2),
                              "ratio_of_bests": round(max(rates) / max(ref), 2)}
                mism = first_mismatches(tokens["transformers"][batch], tokens[side][batch])
                row[side] |= {"greedy_sequences_equal": sum(m is None for m in mism), "greedy_first_mismatch": mism}
        # Rounds in which no side shared its cores with other processes: the cleanest ratios, where there are any.
        quiet = [i for i in range(args.rounds)
                 if all(runs[side][batch][i]["foreign_cores"] <= QUIET_FOREIGN_CORES for side in sides)]
        row["quiet_rounds"] = quiet
        for side in sides[1:]:
            if quiet:
                row[side]["ratio_median_quiet_rounds"] = round(statistics.median(
                    row[side]["ratio_per_round"][i] for i in quiet), 2)
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
        f"{s['prompt_len']} prompt + {s['new_tokens']} new tokens, {s['threads']} BLAS/OpenMP threads each. Batch 1: "
        "prompts one after another; 16: transformers as one static batch, the engine as 16 concurrent requests. "
        "One long-lived process per side; every round runs each side once, back to back, in alternating order, "
        "and a ratio is taken within a round. Output tokens/s include prefill.",
        "",
        "The machine is shared (2 cores, other sessions running tests): 1-minute load average during the run "
        f"{min(s['loadavg_1m']):.2f}-{max(s['loadavg_1m']):.2f}; `foreign_cores_per_round` in the JSON is how many "
        "cores other processes kept busy during each measurement.",
        "",
        f"Command: `{s['command']}`",
        "",
        "| batch | side | tok/s median | tok/s best | x transformers: median of rounds | x: quiet rounds (n) "
        "| x: best vs best | greedy = transformers |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for batch, row in s["batches"].items():
        for side in sides:
            r = row[side]
            if side == "transformers":
                lines.append(f"| {batch} | {side} | {r['tok_s_median']:.0f} | {r['tok_s_best']:.0f} | 1 | 1 | 1 | |")
                continue
            quiet = r.get("ratio_median_quiet_rounds")
            quiet_txt = f"{quiet:.2f} ({len(row['quiet_rounds'])})" if quiet is not None else "none quiet"
            lines.append(f"| {batch} | {side} | {r['tok_s_median']:.0f} | {r['tok_s_best']:.0f} | "
                         f"{r['ratio_median']:.2f} | {quiet_txt} | {r['ratio_of_bests']:.2f} | "
                         f"{r['greedy_sequences_equal']}/{row['num_sequences']} |")
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
