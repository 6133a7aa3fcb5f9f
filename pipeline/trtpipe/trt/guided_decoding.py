"""Guided decoding on the trt-engine path: the xgrammar tokenizer info the tensorrtllm C++ backend loads.

The C++ backend builds its grammar compiler from a JSON file, not from the tokenizer: its
getGuidedDecodingConfigFromParams() (triton_backend/inflight_batcher_llm/src/model_instance_state.cc) turns
guided decoding on only when both `guided_decoding_backend` ("xgrammar", the one value it accepts) and
`xgrammar_tokenizer_info_path` are non-empty, checks that the file exists, and reads its `encoded_vocab`,
`tokenizer_str` and `stop_token_ids`; it logs that `tokenizer_dir` is not used by the C++ workflow (only the
Python backend reads it). The file is written by TensorRT-LLM's examples/generate_xgrammar_tokenizer_info.py
(`--model_dir <HF dir> --output_dir <dir>` -> <dir>/xgrammar_tokenizer_info.json, via
tensorrt_llm.llmapi.tokenizer._xgrammar_tokenizer_info), the step tensorrtllm_backend's docs/guided_decoding.md
gives for `triton_backend: tensorrtllm`.

NOTE: read in NVIDIA/TensorRT-LLM sources at the commits the search corpus holds (the script at 7ed07f0,
model_instance_state.cc at 0c8de69), not in the pinned release's tag itself: that the script sits at this path in
the pinned image's /app/examples (trt/toolchain.py; the image copies TensorRT-LLM's examples/ there) is an
assumption, checked by scripts/gpu-acceptance.sh and when the stage runs there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trtpipe.config import BuildConfig
from trtpipe.errors import StageError
from trtpipe.stages.steps import Command
from trtpipe.trt.recipes import TrtTools

TOKENIZER_INFO_FILE = "xgrammar_tokenizer_info.json"
# What the C++ backend reads from the file (each without a default: a missing key fails the model's load).
TOKENIZER_INFO_KEYS = ("encoded_vocab", "tokenizer_str", "stop_token_ids")


def tokenizer_info_command(config: BuildConfig, hf_dir: Path, out_dir: Path, tools: TrtTools) -> Command:
    """HF checkpoint's tokenizer -> out_dir/xgrammar_tokenizer_info.json."""
    argv = [tools.python, tools.xgrammar_tokenizer_info_script, "--model_dir", str(hf_dir), "--output_dir",
            str(out_dir)]
    # The script loads the tokenizer with AutoTokenizer from the local snapshot; it must not reach the hub.
    return Command(argv=argv, env={"HF_HUB_OFFLINE": "1"}, produces=str(Path(out_dir) / TOKENIZER_INFO_FILE),
                   description=f"write {TOKENIZER_INFO_FILE} for {config.name} (the vocabulary, tokenizer and "
                               "stop ids xgrammar compiles guides against in the tensorrtllm backend)")


def check_tokenizer_info(path: Path) -> dict[str, Any]:
    """The file the C++ backend will parse at load: every key it reads, with the type it reads it as."""
    fix = "read the log above; rebuild with --force tokenizer_info"
    if not path.is_file():
        raise StageError(f"{path.name} was not written", where=f"tokenizer_info {path.parent}", fix=fix)
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise StageError(f"{path.name} is not valid JSON ({e})", where=str(path), fix=fix) from None
    missing = [k for k in TOKENIZER_INFO_KEYS if k not in info] if isinstance(info, dict) else list(TOKENIZER_INFO_KEYS)
    if missing:
        # A tiktoken tokenizer gets no tokenizer_str from the script, and the C++ backend cannot load without it.
        raise StageError(f"{path.name} lacks {', '.join(missing)}, which the tensorrtllm backend reads", where=str(path),
                         fix="use a checkpoint with a fast (tokenizer.json) tokenizer, or set "
                             "serving.guided_decoding: none")
    vocab, stops = info["encoded_vocab"], info["stop_token_ids"]
    if (not isinstance(vocab, list) or not vocab or not isinstance(info["tokenizer_str"], str)
            or not isinstance(stops, list) or not all(isinstance(t, int) for t in stops)):
        raise StageError(f"{path.name} does not have the shape the tensorrtllm backend reads (encoded_vocab: a "
                         "non-empty list of strings, tokenizer_str: a string, stop_token_ids: a list of ints)",
                         where=str(path), fix=fix)
    return {"xgrammar_tokenizer_info": {"vocab_size": len(vocab), "stop_token_ids": stops}}
