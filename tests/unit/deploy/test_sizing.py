"""`trtpipe plan` sizes the Dynamo deployment: GPUs per worker from tp * pp, workers from the plan's replicas, and
the `trtpipe deploy dynamo` command it prints writes exactly that."""

from __future__ import annotations

import json
import shlex

import yaml
from click.testing import CliRunner

from tests.unit.test_cli import trtpipe
from trtpipe.commands.plan import plan_command


def test_the_plan_prints_the_deploy_command_its_replicas_and_gpus_and_the_command_writes_them(tmp_path, capsys):
    result = CliRunner().invoke(plan_command, ["llama-70b-pytorch", "--gpu", "h100-sxm-80gb", "--request-rate", "30",
                                               "--per-replica-throughput", "4", "--out", str(tmp_path / "plan")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert data["replicas"] == 11  # ceil(30 / (4 * 0.7))
    assert data["dynamo"] == {"gpus_per_worker": 4, "workers": 11, "gpus": 44,
                              "command": "trtpipe deploy dynamo llama-70b-pytorch --replicas 11",
                              "sized_by": "request rate", "backend_supported": True}
    assert "on Dynamo        trtpipe deploy dynamo llama-70b-pytorch --replicas 11: 11 worker(s) x 4 GPU(s)" \
        in result.output
    assert "## On NVIDIA Dynamo (many hosts)" in (tmp_path / "plan" / "scaling-plan.md").read_text()

    argv = shlex.split(data["dynamo"]["command"])[1:] + ["--config", "llama-70b-pytorch", "--version", "1"]
    code, out = trtpipe(capsys, *argv)
    assert code == 0, out
    worker = [d for d in yaml.safe_load_all(out) if d][1]["spec"]["services"]["TRTLLMWorker"]
    assert worker["replicas"] == 11 and worker["resources"]["limits"]["gpu"] == "4"


def test_a_plan_for_a_backend_dynamo_cannot_run_prints_no_deploy_command(tmp_path):
    result = CliRunner().invoke(plan_command, ["llama-8b", "--gpu", "h100-sxm-80gb", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "on Dynamo" not in result.output
    assert json.loads((tmp_path / "plan.json").read_text())["dynamo"]["backend_supported"] is False
    assert "On NVIDIA Dynamo" not in (tmp_path / "scaling-plan.md").read_text()
