"""Check a built TensorRT-LLM engine directory against the config it was built from, and read its
limits back.

trtllm-build writes `config.json` (top-level `version`, `pretrained_config` with `mapping` and
`quantization`, `build_config` with the limits and `plugin_config`) and one `rank{N}.engine` per rank
(tensorrt_llm/builder.py Engine.save). A directory that disagrees with the config (a stale rank file,
a missing one, a limit the builder changed) would fail at Triton load time, on a GPU, minutes later;
this check fails the compile stage instead, naming what is wrong.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from trtpipe.config import BuildConfig
from trtpipe.errors import StageError

RANK_FILE = re.compile(r"^rank(\d+)\.engine$")
# The QuantAlgo names TensorRT-LLM records for our formats (None: several are possible, not checked).
QUANT_ALGO = {"fp8": "FP8", "int4_awq": "W4A16_AWQ", "w4a8_awq": "W4A8_AWQ", "int8_sq": None,
              "int8_wo": "W8A16", "int4_wo": "W4A16"}
KV_QUANT_ALGO = {"fp8": "FP8", "int8": "INT8"}
# SpeculativeDecodingMode is an IntFlag serialized as its value: NONE=1, DRAFT_TOKENS_EXTERNAL=2.
DRAFT_TOKENS_EXTERNAL = (2, "DRAFT_TOKENS_EXTERNAL", "draft_tokens_external")


def _fail(engine_dir: Path, what: str, fix: str) -> StageError:
    return StageError(what, where=f"engine dir {engine_dir}", fix=fix)


def read_engine_config(engine_dir: Path) -> dict[str, Any]:
    path = Path(engine_dir) / "config.json"
    if not path.is_file():
        raise _fail(engine_dir, "config.json is missing (trtllm-build writes it next to the rank files)",
                    "rebuild the engine: trtpipe build CONFIG --force compile")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise _fail(engine_dir, f"config.json is not valid JSON ({e})", "rebuild: --force compile") from None
    for key in ("pretrained_config", "build_config"):
        if not isinstance(data.get(key), dict):
            raise _fail(engine_dir, f"config.json has no {key!r} section; not a TensorRT-LLM engine config",
                        "point at the directory trtllm-build wrote, or rebuild")
    return data


def expected_limits(config: BuildConfig) -> dict[str, int]:
    """What trtllm-build will record for this config: it adds max_draft_len to max_seq_len for a
    speculative target and raises max_num_tokens to max_batch_size * (max_draft_len + 1) if smaller."""
    e = config.engine
    draft_len = config.speculation.max_draft_len if config.speculation else 0
    return {"max_batch_size": e.max_batch_size, "max_seq_len": e.max_seq_len + draft_len,
            "max_num_tokens": max(e.max_num_tokens, e.max_batch_size * (draft_len + 1)) if draft_len
            else e.max_num_tokens, "tokens_per_block": e.tokens_per_block, "max_draft_len": draft_len,
            "max_beam_width": 1}


def verify_engine_dir(engine_dir: Path, config: BuildConfig, *, draft: bool = False,
                      checkpoint_quant_algo: str | None = None) -> dict[str, Any]:
    """Raise StageError naming the first disagreement; otherwise return the limits the engine has.

    draft=True checks a draft engine (built without speculation flags even if config has them).
    checkpoint_quant_algo: the quant_algo a checkpoint that came quantized converts to (trt/prequantized.py)."""
    engine_dir = Path(engine_dir)
    if not engine_dir.is_dir():
        raise _fail(engine_dir, "the engine directory does not exist", "run the compile stage first")
    data = read_engine_config(engine_dir)
    pretrained, build = data["pretrained_config"], data["build_config"]
    mapping = pretrained.get("mapping") or {}
    tp, pp = int(mapping.get("tp_size", 1)), int(mapping.get("pp_size", 1))
    world_size = int(mapping.get("world_size", tp * pp))
    want = config.parallelism
    if (tp, pp) != (want.tp, want.pp):
        raise _fail(engine_dir, f"engine is tp={tp}, pp={pp} but the config asks for tp={want.tp}, pp={want.pp}",
                    "rebuild with the configured parallelism (the checkpoint must be converted with the same tp/pp)")
    if world_size != tp * pp:
        raise _fail(engine_dir, f"mapping.world_size is {world_size}, not tp*pp = {tp * pp}",
                    "rebuild; context parallelism is not supported by trtpipe")

    ranks = sorted(int(m.group(1)) for p in engine_dir.iterdir() if (m := RANK_FILE.match(p.name)))
    missing = sorted(set(range(world_size)) - set(ranks))
    extra = sorted(set(ranks) - set(range(world_size)))
    if missing or extra:
        parts = ([f"missing rank{r}.engine" for r in missing] + [f"unexpected rank{r}.engine" for r in extra])
        raise _fail(engine_dir, f"expected rank0..rank{world_size - 1}.engine for world size {world_size}: "
                                + ", ".join(parts),
                    "rebuild into an empty directory (a stale rank file means an old build was mixed in)")
    empty = [f"rank{r}.engine" for r in ranks if (engine_dir / f"rank{r}.engine").stat().st_size == 0]
    if empty:
        raise _fail(engine_dir, f"empty engine file(s): {', '.join(empty)}", "rebuild: --force compile")

    plugin = build.get("plugin_config") or {}
    found = {"max_batch_size": build.get("max_batch_size"), "max_seq_len": build.get("max_seq_len"),
             "max_num_tokens": build.get("max_num_tokens"), "max_beam_width": build.get("max_beam_width", 1),
             "tokens_per_block": plugin.get("tokens_per_block"),
             "max_draft_len": build.get("max_draft_len", 0) or 0}
    want_limits = expected_limits(config) if not draft else {**expected_limits(config.model_copy(
        update={"speculation": None})), "max_draft_len": 0}
    for key in ("max_batch_size", "max_seq_len", "tokens_per_block", "max_draft_len", "max_beam_width"):
        if found[key] != want_limits[key]:
            raise _fail(engine_dir, f"build_config {key} is {found[key]}, the config implies {want_limits[key]}",
                        "rebuild: the engine was built from different limits than this config")
    if found["max_num_tokens"] is None or found["max_num_tokens"] < min(want_limits["max_num_tokens"],
                                                                          want_limits["max_batch_size"]
                                                                          * want_limits["max_seq_len"]):
        raise _fail(engine_dir, f"max_num_tokens is {found['max_num_tokens']}, below the configured "
                                f"{want_limits['max_num_tokens']}", "rebuild with the configured engine limits")
    if str(build.get("kv_cache_type", "PAGED")).upper() != "PAGED" or plugin.get("paged_kv_cache") is False:
        raise _fail(engine_dir, "the engine has no paged KV cache; in-flight batching needs one",
                    "rebuild with --kv_cache_type paged")
    if found["max_draft_len"] and not draft:
        mode = build.get("speculative_decoding_mode")
        if mode not in DRAFT_TOKENS_EXTERNAL:
            raise _fail(engine_dir, f"speculative_decoding_mode is {mode!r}, not draft_tokens_external",
                        "rebuild with --speculative_decoding_mode draft_tokens_external")
    needs_paged_ctx = config.serving.enable_kv_cache_reuse or config.serving.enable_chunked_context \
        or (config.speculation is not None and not draft)
    if needs_paged_ctx and plugin.get("use_paged_context_fmha") is False:
        raise _fail(engine_dir, "paged context FMHA is off, so KV reuse / chunked context / draft verification "
                                "cannot run", "rebuild with --use_paged_context_fmha enable on an SM >= 89 GPU "
                                              "for an fp8 KV cache")

    quant = pretrained.get("quantization") or {}
    q = config.quantization
    want_algo = QUANT_ALGO.get(q.format) if q else None
    if checkpoint_quant_algo is not None and quant.get("quant_algo") != checkpoint_quant_algo:
        raise _fail(engine_dir, f"quant_algo is {quant.get('quant_algo')}, expected {checkpoint_quant_algo} for the "
                                "checkpoint's own quantization", "rebuild: --force convert")
    if q is None and quant.get("quant_algo") and checkpoint_quant_algo is None:
        raise _fail(engine_dir, f"the engine is quantized ({quant.get('quant_algo')}) but the config is not",
                    "rebuild from an unquantized checkpoint, or add the quantization to the config")
    if q and want_algo and quant.get("quant_algo") != want_algo:
        raise _fail(engine_dir, f"quant_algo is {quant.get('quant_algo')}, expected {want_algo} for {q.format}",
                    "rebuild from the checkpoint quantized with this config")
    want_kv = KV_QUANT_ALGO.get(q.kv_cache_dtype) if q and q.kv_cache_dtype else None
    if (quant.get("kv_cache_quant_algo") or None) != want_kv:
        raise _fail(engine_dir, f"kv_cache_quant_algo is {quant.get('kv_cache_quant_algo')}, expected {want_kv}",
                    "rebuild from the checkpoint quantized with this config")

    return {**found, "max_input_len": build.get("max_input_len"), "world_size": world_size, "tp_size": tp,
            "pp_size": pp, "dtype": pretrained.get("dtype"), "quant_algo": quant.get("quant_algo"),
            "kv_cache_quant_algo": quant.get("kv_cache_quant_algo"),
            "use_paged_context_fmha": plugin.get("use_paged_context_fmha"),
            "tensorrt_llm_version": data.get("version"), "rank_files": [f"rank{r}.engine" for r in ranks]}
