"""Run ModelOpt's examples/llm_ptq/hf_ptq.py with a chosen calibration seed.

hf_ptq.py has no seed flag: it seeds `random` and NumPy with its module constant `RAND_SEED = 1234` in main()
(NVIDIA/TensorRT-Model-Optimizer examples/llm_ptq/hf_ptq.py @42bb023). To make quantization.calibration.seed
reach the calibration, this runs the script as `__main__` with that one line set to the config's seed, and
refuses (exit 2, naming the file) when the line is not there exactly once, rather than calibrating with a seed
the config did not ask for.

    python3 -m trtpipe.trt.seeded_ptq --seed N /opt/modelopt/examples/llm_ptq/hf_ptq.py ARGS...

Standard library only; runs in the image's Python where ModelOpt is installed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SEED_LINE = re.compile(r"^RAND_SEED = \d+$", re.MULTILINE)


def seeded_source(source: str, seed: int, path: str = "hf_ptq.py") -> str:
    """The script's text with its RAND_SEED line set to `seed`; ValueError unless exactly one such line."""
    found = SEED_LINE.findall(source)
    if len(found) != 1:
        raise ValueError(f"{path} has {len(found)} `RAND_SEED = <int>` lines, expected 1: this ModelOpt version seeds "
                         "calibration differently; set quantization.calibration.seed to 1234 (hf_ptq.py's own) "
                         "or update trtpipe/trt/seeded_ptq.py")
    return SEED_LINE.sub(f"RAND_SEED = {int(seed)}", source)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "--seed":
        print("usage: python3 -m trtpipe.trt.seeded_ptq --seed N HF_PTQ_SCRIPT [ARGS...]", file=sys.stderr)
        return 2
    seed, script, args = int(argv[1]), Path(argv[2]), argv[3:]
    try:
        code = seeded_source(script.read_text(), seed, str(script))
    except (OSError, ValueError) as e:
        print(f"seeded_ptq: {e}", file=sys.stderr)
        return 2
    # As `python3 hf_ptq.py ARGS`: its directory first on sys.path (it imports example_utils beside it).
    sys.path.insert(0, str(script.parent))
    sys.argv = [str(script), *args]
    print(f"seeded_ptq: running {script} with RAND_SEED = {seed}", file=sys.stderr)
    exec(compile(code, str(script), "exec"), {"__name__": "__main__", "__file__": str(script)})  # noqa: S102
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
