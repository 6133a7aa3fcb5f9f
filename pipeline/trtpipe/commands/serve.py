"""`trtpipe serve`: parse options, start Triton and the frontend (serve.process.server.serve), print."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from trtpipe.commands.options import REPO_OPTION, resolve_repo

console = Console(stderr=True)


@click.command()
@REPO_OPTION
@click.option("--host", default="127.0.0.1", show_default=True, help="frontend address")
@click.option("--port", default=9000, show_default=True, help="frontend port")
@click.option("--http-port", default=8000, show_default=True, help="Triton HTTP port")
@click.option("--grpc-port", default=8001, show_default=True, help="Triton gRPC port")
@click.option("--metrics-port", default=8002, show_default=True, help="Triton metrics port")
@click.option("--triton", "triton_urls", multiple=True, metavar="HOST:PORT",
              help="an externally started Triton replica (gRPC address); repeatable. Without it, serve starts "
                   "its own Triton")
@click.option("--chat-template", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="a Jinja chat template file overriding the checkpoint's")
@click.option("--api-key", "api_keys", multiple=True, metavar="KEY",
              help="accept this API key (repeatable); also $TRTPIPE_API_KEYS (comma-separated) and --api-key-file")
@click.option("--api-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="a file with one API key per line")
@click.option("--protect-metrics/--open-metrics", default=False, show_default=True,
              help="require an API key on /metrics too")
@click.option("--max-running", default=256, show_default=True, help="requests generating at once, per model")
@click.option("--max-waiting", default=512, show_default=True, help="requests queued beyond that before 429")
@click.option("--request-timeout", default=600.0, show_default=True, help="per-request deadline in seconds (504)")
@click.option("--keepalive", default=15.0, show_default=True, help="SSE keep-alive comment after this many idle s")
@click.option("--drain-timeout", default=30.0, show_default=True,
              help="on SIGTERM, seconds for requests in flight to finish before they are ended")
@click.option("--max-body-bytes", default=4 * 1024 * 1024, show_default=True, help="larger request bodies get 413")
@click.option("--allowed-origin", "allowed_origins", multiple=True, metavar="ORIGIN",
              help="a browser origin allowed to call the API (CORS), e.g. https://app.example; repeatable. "
                   "Without it CORS is off: browsers refuse cross-site calls")
@click.option("--api-servers", type=click.IntRange(min=1), default=None,
              help="OpenAI frontend processes sharing the port, each with its own gRPC channels to Triton; the "
                   "bounds and /metrics stay those of the whole server [default: one per 4 usable cores, 1 to 4]")
@click.option("--engine-threads", type=click.IntRange(min=1), default=None,
              help="BLAS threads of the reference engine in the Triton serve starts [default: "
                   "$OPENBLAS_NUM_THREADS / $OMP_NUM_THREADS if set, else all cores but one, left to the frontend]")
@click.option("--health-timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="seconds Triton gets to answer each health check (ServerLive, then a one-token canary)")
@click.option("--hang-timeout", type=click.FloatRange(min=1.0), default=20.0, show_default=True,
              help="the Triton serve started is restarted when its health check has failed this many seconds on "
                   "end (a hung server; a dead one is restarted at once)")
@click.option("--triton-max-failures", type=click.IntRange(min=1), default=5, show_default=True,
              help="serve exits (code 5) when the Triton it started fails this many times within 5 minutes "
                   "(dies, hangs, or does not come back); 1: exit at the first failure, never restart")
@click.option("--dynamo", is_flag=True, default=False,
              help="serve through NVIDIA Dynamo instead: Dynamo's frontend (KV-aware router) and --dynamo-workers "
                   "trtpipe workers per published model, on this host (needs `make dynamo`; see the README)")
@click.option("--dynamo-workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="with --dynamo: trtpipe workers per model, each with its own reference engine")
@click.option("--router-mode", type=click.Choice(["kv", "round-robin", "random", "least-loaded"]), default="kv",
              show_default=True, help="with --dynamo: how Dynamo's frontend picks a worker")
def serve(repo: Path | None, host: str, port: int, http_port: int, grpc_port: int, metrics_port: int,
          triton_urls: tuple[str, ...], chat_template: Path | None, api_keys: tuple[str, ...],
          api_key_file: Path | None, protect_metrics: bool, max_running: int, max_waiting: int,
          request_timeout: float, keepalive: float, drain_timeout: float, max_body_bytes: int,
          api_servers: int | None, engine_threads: int | None, health_timeout: float, hang_timeout: float,
          triton_max_failures: int, allowed_origins: tuple[str, ...], dynamo: bool = False, dynamo_workers: int = 2,
          router_mode: str = "kv") -> None:
    """Start Triton on the repository and the OpenAI-compatible frontend in front of it."""
    if dynamo:
        if triton_urls or api_keys or api_key_file or chat_template:
            raise click.UsageError("--dynamo serves through Dynamo's own frontend: --triton, --api-key, "
                                   "--api-key-file and --chat-template apply to trtpipe's frontend only")
        _serve_dynamo(resolve_repo(repo), host, port, dynamo_workers, router_mode, drain_timeout, engine_threads)
        return
    from trtpipe.serve.process.launcher import TritonPorts, run_log_path
    from trtpipe.serve.api.middleware import load_api_keys
    from trtpipe.serve.process.server import ServeOptions, default_api_servers
    from trtpipe.serve.process.server import serve as run_serve

    if api_keys:
        console.print("[yellow]warning:[/] --api-key puts the key in the process list (ps) and in shell history; "
                      "use --api-key-file FILE or $TRTPIPE_API_KEYS (comma-separated) instead. The key is "
                      "accepted.", highlight=False, soft_wrap=True)
    keys = load_api_keys(api_keys, api_key_file)
    opts = ServeOptions(repo=resolve_repo(repo), host=host, port=port,
                        triton_ports=TritonPorts(http_port, grpc_port, metrics_port), triton_urls=triton_urls,
                        chat_template=chat_template.read_text() if chat_template else None, api_keys=keys,
                        protect_metrics=protect_metrics, max_running=max_running, max_waiting=max_waiting,
                        request_timeout_s=request_timeout or None, keepalive_s=keepalive or None,
                        drain_timeout_s=drain_timeout, max_body_bytes=max_body_bytes, engine_threads=engine_threads,
                        api_servers=api_servers or default_api_servers(), health_timeout_s=health_timeout,
                        hang_timeout_s=hang_timeout, triton_max_failures=triton_max_failures,
                        triton_log=None if triton_urls else run_log_path(), allowed_origins=allowed_origins)

    def starting() -> None:  # the ports are free
        if triton_urls:
            console.print(f"using Triton replica(s) {', '.join(triton_urls)}")
        else:
            console.print(f"starting Triton on {opts.repo} (grpc :{grpc_port}; log {opts.triton_log}) ...",
                          soft_wrap=True, highlight=False)

    auth = f"{len(keys)} API key(s)" if keys else "no API keys (open)"
    procs = f", {opts.api_servers} API server processes" if opts.api_servers > 1 else ""
    run_serve(opts, on_ready=lambda url: console.print(f"OpenAI frontend on {url} ({auth}{procs})"),
              on_starting=starting)


def _serve_dynamo(repo: Path, host: str, port: int, workers: int, router_mode: str, drain_timeout: float,
                  engine_threads: int | None) -> None:
    import importlib.util

    from trtpipe.dynamo.stack import StackOptions, serve_forever, servable_models
    from trtpipe.errors import ConfigError

    if importlib.util.find_spec("dynamo") is None:
        raise ConfigError("NVIDIA Dynamo is not installed", where="trtpipe serve --dynamo",
                          fix="make dynamo (installs ai-dynamo 1.6.1 into .venv)")
    models = servable_models(repo)
    if not models:
        raise ConfigError(f"no published model in {repo} runs on the reference engine", where=str(repo),
                          fix="trtpipe build tiny-llama")
    opts = StackOptions(repo=repo, models=models, host=host, port=port, workers=workers, router_mode=router_mode,
                        drain_timeout_s=drain_timeout, engine_threads=engine_threads)
    console.print(f"starting Dynamo's frontend ({router_mode} router) and {workers} worker(s) for "
                  f"{', '.join(models)} ...", highlight=False)
    serve_forever(opts, on_ready=lambda url: console.print(f"OpenAI frontend (Dynamo) on {url}", highlight=False))
