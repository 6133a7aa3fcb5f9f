"""How `trtpipe plan` sizes a Dynamo deployment: GPUs per worker from the config's parallelism, workers from the
plan's replicas (its request-rate target over one replica's throughput), and the command that writes it.

An aggregated worker is what the plan measures (one engine doing prefill and decode, like one `trtpipe serve`
replica), so its replica count carries over. Sizing prefill and decode pools separately needs the prefill and
decode throughputs on their own, which the plan does not model: for --disaggregated the split is left to the user
(or Dynamo's SLA planner) and said so.
"""

from __future__ import annotations

from trtpipe.config import BuildConfig


def dynamo_sizing(config: BuildConfig, replicas: int | None) -> dict:
    workers = replicas or 1
    gpus = config.parallelism.world_size
    command = f"trtpipe deploy dynamo {config.name}" + (f" --replicas {workers}" if workers != 1 else "")
    return {"gpus_per_worker": gpus, "workers": workers, "gpus": gpus * workers, "command": command,
            "sized_by": "request rate" if replicas is not None else "none given: one worker",
            "backend_supported": config.backend == "trtllm-pytorch"}
