"""Pickled PyTorch weights (pytorch_model*.bin) -> safetensors, for a source with `allow_pickle: true`.

Each pickle shard is loaded with `torch.load(weights_only=True)` (tensors and plain containers only: no
arbitrary objects are constructed) and written as a safetensors shard beside an index in the layout
transformers writes (`model-0000i-of-0000n.safetensors`, `model.safetensors.index.json`); the pickles are
then deleted, so nothing downstream of fetch ever sees one. torch is an optional dependency (the `pickle`
extra): without it the conversion is refused, naming the extra.
"""

from __future__ import annotations

import json
from pathlib import Path

from trtpipe.errors import SourceError

EXTRA = "trtpipe[pickle]"


def _torch():
    try:
        import torch
    except ImportError:
        raise SourceError("the checkpoint's weights are pickled (pytorch_model*.bin) and converting them to "
                          "safetensors needs torch, which is not installed", where="source.allow_pickle",
                          fix=f"pip install '{EXTRA}' (a CPU-only torch is enough), or use a checkpoint with "
                              "*.safetensors weights") from None
    return torch


def pickle_shards(out_dir: Path) -> list[Path]:
    return sorted(p for p in out_dir.iterdir() if p.suffix in (".bin", ".pt", ".pth"))


def convert_pickles(out_dir: Path) -> dict[str, str]:
    """Replace the pickle shards in out_dir by safetensors shards and an index; {pickle name: safetensors name}."""
    shards = pickle_shards(out_dir)
    if not shards:
        return {}
    torch = _torch()
    from safetensors.torch import save_file

    renamed, weight_map = {}, {}
    for i, shard in enumerate(shards, start=1):
        name = "model.safetensors" if len(shards) == 1 else f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        state = torch.load(shard, map_location="cpu", weights_only=True)
        # safetensors refuses tensors that share memory (tied weights): store each once, contiguous.
        tensors = {k: v.detach().clone().contiguous() for k, v in state.items()}
        save_file(tensors, str(out_dir / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in tensors})
        renamed[shard.name] = name
        shard.unlink()
    (out_dir / "pytorch_model.bin.index.json").unlink(missing_ok=True)
    if len(shards) > 1:
        index = {"metadata": {"converted_from": sorted(renamed)}, "weight_map": dict(sorted(weight_map.items()))}
        (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return renamed
