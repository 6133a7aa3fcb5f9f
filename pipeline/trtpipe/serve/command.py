"""`trtpipe serve`: parse options, start Triton and the frontend (serve.server.serve), print."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

console = Console(stderr=True)
REPO_OPTION = click.option("--repo", type=click.Path(path_type=Path), default=None,
                           help="Triton model repository [default: $TRTPIPE_HOME/model_repository]")


def _repo(repo: Path | None) -> Path:
    from trtpipe.repo.layout import default_repository

    return (repo or default_repository()).expanduser().resolve()


@click.command()
@REPO_OPTION
@click.option("--host", default="127.0.0.1", show_default=True, help="frontend address")
@click.option("--port", default=9000, show_default=True, help="frontend port")
@click.option("--http-port", default=8000, show_default=True, help="Triton HTTP port")
@click.option("--grpc-port", default=8001, show_default=True, help="Triton gRPC port")
@click.option("--metrics-port", default=8002, show_default=True, help="Triton metrics port")
@click.option("--chat-template", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="a Jinja chat template file overriding the checkpoint's")
@click.option("--max-running", default=256, show_default=True, help="requests generating at once")
@click.option("--max-waiting", default=512, show_default=True, help="requests queued beyond that before 429")
def serve(repo: Path | None, host: str, port: int, http_port: int, grpc_port: int, metrics_port: int,
          chat_template: Path | None, max_running: int, max_waiting: int) -> None:
    """Start Triton on the repository and the OpenAI-compatible frontend in front of it."""
    from trtpipe.serve.launcher import TritonPorts
    from trtpipe.serve.server import ServeOptions
    from trtpipe.serve.server import serve as run_serve

    opts = ServeOptions(repo=_repo(repo), host=host, port=port,
                        triton_ports=TritonPorts(http_port, grpc_port, metrics_port),
                        chat_template=chat_template.read_text() if chat_template else None,
                        max_running=max_running, max_waiting=max_waiting)
    console.print(f"starting Triton on {opts.repo} (grpc :{grpc_port}) ...")
    run_serve(opts, on_ready=lambda url: console.print(f"Triton ready; OpenAI frontend on {url}"))
