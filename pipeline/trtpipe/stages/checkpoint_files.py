"""Which files of a checkpoint fetch takes, and what it refuses, for hub and local sources alike.

Only the repo root's checkpoint files are taken (ALLOW_PATTERNS): config, weights, tokenizer and chat template
files as Hugging Face writes them today (chat_template.jinja since transformers 4.43, chat_template.json for
processors, sharded safetensors with their index). Pickled weights run code when loaded: taken only with
`source.allow_pickle` and only where no safetensors exist (then converted, stages/pickle_weights.py).
A local directory is sandboxed: a file that is a symlink resolving outside it is refused, so nothing from
elsewhere on the machine reaches the cache or, through the tokenizer files, the published repository.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from trtpipe.errors import SourceError

ALLOW_PATTERNS = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json", "tokenizer.model", "chat_template.jinja", "chat_template.json",
                  "*.safetensors", "model.safetensors.index.json",
                  "hf_quant_config.json"]  # ModelOpt's export names its quantization here, not in config.json
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth", "pytorch_model.bin.index.json"]
FAST_TOKENIZER_FIX = ("save the checkpoint's tokenizer as a fast tokenizer, which writes tokenizer.json: "
                      "python -c \"from transformers import AutoTokenizer as T; T.from_pretrained('DIR')"
                      ".save_pretrained('DIR')\" (needs transformers and, for SentencePiece, sentencepiece), then "
                      "point source.path at DIR")


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def select_files(where: str, files: list[str], allow_pickle: bool) -> list[str]:
    """The root files the checkpoint needs: ALLOW_PATTERNS, plus pickled weights only where nothing else exists.

    Subfolders are skipped: they hold other formats (original/*.pth, onnx/), not the Hugging Face checkpoint.
    `where`: the repo id or directory, for messages."""
    root = [f for f in files if "/" not in f]
    wanted = [f for f in root if _matches(f, ALLOW_PATTERNS)]
    if "config.json" not in wanted:
        raise SourceError(f"{where} has no config.json", where="source",
                          fix="point the source at a Hugging Face-format checkpoint (config.json, *.safetensors, "
                              "tokenizer.json)")
    if "tokenizer.json" not in wanted:
        has_sp = "tokenizer.model" in wanted
        raise SourceError(f"{where} has no tokenizer.json" + (" (only a SentencePiece tokenizer.model)" if has_sp
                                                                else ""), where="source",
                          fix=FAST_TOKENIZER_FIX + "; trtpipe's tokenizer, templates and guided decoding all read "
                                                   "tokenizer.json")
    if any(f.endswith(".safetensors") for f in wanted):
        return wanted
    pickled = [f for f in root if _matches(f, PICKLE_PATTERNS)]
    if not pickled:
        raise SourceError(f"{where} has no weights at its root (no *.safetensors, no *.bin)", where="source",
                          fix="point the source at a Hugging Face-format checkpoint")
    if not allow_pickle:
        raise SourceError(f"{where} has only pickled weights ({', '.join(sorted(pickled)[:3])}); pickle files can "
                          "run arbitrary code when loaded", where="source.allow_pickle",
                          fix="use a revision or checkpoint with *.safetensors weights, or set source.allow_pickle: "
                              "true if you trust it (the weights are then converted to safetensors with torch)")
    return wanted + pickled


def local_files(directory: Path, allow_pickle: bool) -> list[str]:
    """The files fetch takes from a local checkpoint directory; refuses symlinks that leave it."""
    if not (directory / "config.json").is_file():
        raise SourceError(f"{directory} is not a Hugging Face checkpoint (no config.json)", where="source.path",
                          fix="point source.path at a directory holding config.json and *.safetensors")
    root = directory.resolve()
    names = select_files(str(directory), sorted(p.name for p in directory.iterdir() if p.is_file()), allow_pickle)
    for name in names:
        target = (directory / name).resolve()
        if not target.is_relative_to(root):
            raise SourceError(f"{directory / name} is a symlink to {target}, outside the checkpoint directory",
                              where="source.path",
                              fix="copy the file into the checkpoint directory (or link within it); trtpipe reads "
                                  "nothing from outside the directory a config names")
    return names
