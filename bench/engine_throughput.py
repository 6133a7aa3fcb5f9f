"""Greedy decode throughput of the reference engine (trtpipe.engine) at several concurrencies.

Builds a random Llama-shaped checkpoint (hidden 256, 4 layers, 8 heads / 2 kv heads, vocab 4096),
converts it, then for each concurrency runs Engine.generate on that many random prompts and prints
tokens/s. Nothing is downloaded; nothing needs a GPU.

    .venv/bin/python -m bench.engine_throughput                      # 1, 16, 64 requests of 64 + 64
    .venv/bin/python -m bench.engine_throughput --concurrency 1 8 --prompt-len 128 --json out.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from trtpipe.engine import Engine, EngineLimits, SamplingParams, convert_checkpoint

MODEL = {
    "architectures": ["LlamaForCausalLM"], "vocab_size": 4096, "hidden_size": 256, "intermediate_size": 768,
    "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2,
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
}


def write_random_checkpoint(d: Path, cfg: dict, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    h, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = h // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * hd

    def lin(o: int, i: int) -> np.ndarray:
        return (rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)

    t = {"model.embed_tokens.weight": rng.standard_normal((v, h)).astype(np.float32),
         "model.norm.weight": np.ones(h, np.float32), "lm_head.weight": lin(v, h)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t.update({
            p + "input_layernorm.weight": np.ones(h, np.float32),
            p + "post_attention_layernorm.weight": np.ones(h, np.float32),
            p + "self_attn.q_proj.weight": lin(h, h), p + "self_attn.k_proj.weight": lin(kv, h),
            p + "self_attn.v_proj.weight": lin(kv, h), p + "self_attn.o_proj.weight": lin(h, h),
            p + "mlp.gate_proj.weight": lin(inter, h), p + "mlp.up_proj.weight": lin(inter, h),
            p + "mlp.down_proj.weight": lin(h, inter),
        })
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg))
    save_file(t, str(d / "model.safetensors"))


def measure(engine_dir: Path, concurrency: int, prompt_len: int, new_tokens: int, seed: int = 0) -> dict:
    limits = EngineLimits(max_batch_size=max(concurrency, 1), max_num_tokens=8192,
                          max_seq_len=prompt_len + new_tokens, tokens_per_block=32,
                          enable_kv_cache_reuse=False)
    engine = Engine.from_dir(engine_dir, limits)
    vocab = engine.config.vocab_size
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(0, vocab, prompt_len).tolist() for _ in range(concurrency)]
    engine.generate([prompts[0][:8]], 2)  # warm-up: first-touch of the cache pages, BLAS init
    start = time.perf_counter()
    outputs = engine.generate(prompts, new_tokens, SamplingParams(temperature=0.0))
    elapsed = time.perf_counter() - start
    num_out = sum(len(o) for o in outputs)
    return {
        "concurrency": concurrency, "prompt_len": prompt_len, "new_tokens": new_tokens,
        "seconds": round(elapsed, 3),
        "output_tokens_per_s": round(num_out / elapsed, 1),
        "total_tokens_per_s": round((num_out + concurrency * prompt_len) / elapsed, 1),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        write_random_checkpoint(Path(tmp) / "hf", MODEL)
        convert_checkpoint(Path(tmp) / "hf", Path(tmp) / "engine")
        print(f"{'requests':>8} {'seconds':>8} {'out tok/s':>10} {'total tok/s':>12}")
        for c in args.concurrency:
            r = measure(Path(tmp) / "engine", c, args.prompt_len, args.new_tokens)
            results.append(r)
            print(f"{c:>8} {r['seconds']:>8.2f} {r['output_tokens_per_s']:>10.1f} {r['total_tokens_per_s']:>12.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
