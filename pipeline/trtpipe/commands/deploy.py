"""`trtpipe deploy dynamo MODEL`: the NVIDIA Dynamo operator's DynamoGraphDeployment for a published version."""

from __future__ import annotations

from pathlib import Path

import click

from trtpipe.commands.options import REPO_OPTION, resolve_repo


@click.group()
def deploy() -> None:
    """Write deployments of published versions for clusters."""


@deploy.command("dynamo")
@click.argument("model")
@REPO_OPTION
@click.option("--version", "version", type=click.IntRange(min=1), default=None,
              help="the published version to serve [default: the live one]")
@click.option("--config", "config_name", default=None, metavar="CONFIG",
              help="a version published elsewhere (the cluster's volume), not in --repo: the build config it was "
                   "built from; needs --version")
@click.option("--disaggregated", is_flag=True, help="prefill and decode workers instead of aggregated ones")
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True,
              help="aggregated workers, or decode workers with --disaggregated (trtpipe plan --request-rate sizes it)")
@click.option("--prefill-replicas", type=click.IntRange(min=1), default=None,
              help="prefill workers; only with --disaggregated [default: 1]")
@click.option("--gpus-per-node", type=click.IntRange(min=1), default=8, show_default=True,
              help="GPUs of one cluster node: a worker needing more becomes a multinode worker")
@click.option("--name", default=None, help="the deployment's name [default: trtpipe-MODEL]")
@click.option("--pod-repo", default=None, metavar="PATH",
              help="the model repository's path inside the pods [default: /var/lib/trtpipe/model_repository]")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="write DIR/MODEL.yaml [default: print it, for kubectl apply -f -]")
def dynamo(model, repo, version, config_name, disaggregated, replicas, prefill_replicas, gpus_per_node, name,
           pod_repo, out_dir):
    """Write the DynamoGraphDeployment (Dynamo's frontend and TensorRT-LLM workers) for MODEL's published version.

    MODEL must be built with `backend: trtllm-pytorch`. The workers load the version from the trtpipe-home
    volume claim (docker/k8s/pvc.yaml)."""
    from trtpipe.deploy import source
    from trtpipe.deploy.dynamo_graph import Topology, command_line, deployment_name, render

    if prefill_replicas is not None and not disaggregated:
        raise click.UsageError("--prefill-replicas applies to prefill workers: add --disaggregated")
    pod_repo = pod_repo or source.POD_REPO
    if config_name is not None:
        artifact = source.from_config(config_name, version, pod_repo)
        if artifact.config.name != model:
            raise click.UsageError(f"--config {config_name} builds {artifact.config.name!r}, not {model!r}")
    else:
        artifact = source.from_repository(resolve_repo(repo), model, version, pod_repo)
    topology = Topology(disaggregated=disaggregated, replicas=replicas, prefill_replicas=prefill_replicas or 1,
                        gpus_per_node=gpus_per_node)
    command = command_line(artifact, topology, from_config=config_name is not None, name=name)
    text = render(artifact, topology, deployment_name(model, name), command)
    if out_dir is None:
        click.echo(text, nl=False)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{artifact.config.name}.yaml"
    path.write_text(text)
    click.echo(f"wrote {path}: {model} version {artifact.version}; apply it with kubectl apply -f {path}", err=True)
