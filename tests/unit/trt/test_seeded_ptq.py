"""trt/seeded_ptq.py: ModelOpt's hf_ptq.py has no seed flag, so trtpipe runs it with its RAND_SEED constant set to
quantization.calibration.seed. Checked on a stand-in script with hf_ptq.py's seed line; ModelOpt does not run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trtpipe.trt.seeded_ptq import seeded_source

STAND_IN = "import sys\nRAND_SEED = 1234\n\nif __name__ == '__main__':\n    print(RAND_SEED, sys.argv[1:])\n"


def test_the_seed_line_is_replaced_and_nothing_else():
    assert seeded_source(STAND_IN, 7) == STAND_IN.replace("RAND_SEED = 1234", "RAND_SEED = 7")


def test_a_script_without_exactly_one_seed_line_is_refused_naming_the_way_out():
    with pytest.raises(ValueError, match="has 0 `RAND_SEED = <int>` lines, expected 1") as e:
        seeded_source("import random\nrandom.seed(0)\n", 7)
    assert "calibration.seed to 1234" in str(e.value)


def test_the_script_runs_as_main_with_its_arguments_and_the_configs_seed(tmp_path):
    script = tmp_path / "hf_ptq.py"
    script.write_text(STAND_IN)
    out = subprocess.run([sys.executable, "-m", "trtpipe.trt.seeded_ptq", "--seed", "7", str(script), "--qformat",
                          "fp8"], capture_output=True, text=True, check=True)
    assert out.stdout == "7 ['--qformat', 'fp8']\n"
    assert f"running {script} with RAND_SEED = 7" in out.stderr
