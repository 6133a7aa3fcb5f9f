"""docker/: the compose file and every Kubernetes manifest, checked against their schemas offline, and the
facts that tie them to trtpipe (probe paths and ports, shutdown timing, autoscaling metric, disruption
budget).

Schemas come from installed packages (the `test` extra), never from the network: the Compose
Specification schema vendored by check-jsonschema, and the Kubernetes OpenAPI-derived JSON schemas of
kubernetes-validate (strict: unknown keys are errors), for each pinned Kubernetes version. These tests validate
the files we would deploy and run the nightly's rollout/finish shell scripts with stand-in kubectl and trtpipe
commands; they start no container, pull no image and talk to no cluster.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "docker"
K8S = DOCKER / "k8s"
KUBERNETES = "1.30"  # the oldest minor we support; the manifests use nothing newer
KUBERNETES_VERSIONS = ("1.30", "1.31", "1.33")  # pinned: each manifest is validated against every one


def compose_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
                        .joinpath("compose-spec.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def manifests() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def resource(kind: str, name: str | None = None) -> dict:
    found = [d for _, d in manifests() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def k8s_errors(doc: dict, version: str = KUBERNETES) -> str | None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return f"{'.'.join(map(str, e.path))}: {e.message}"
    return None


def test_compose_file_matches_the_compose_specification():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in compose_validator().iter_errors(compose)]
    assert errors == []


def test_the_compose_schema_catches_a_misspelled_key():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    compose["services"]["serve"]["healthcheck"]["intervall"] = "10s"
    assert not compose_validator().is_valid(compose)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("source,doc", manifests(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_every_kubernetes_manifest_matches_its_schema_in_every_pinned_kubernetes(source, doc, version):
    if doc["kind"] == "Kustomization":  # a kustomize file, not an API object: checked below
        return
    assert k8s_errors(doc, version) is None, f"{source} ({version}): {k8s_errors(doc, version)}"


def test_strict_kubernetes_validation_catches_a_misspelled_key():
    deployment = copy.deepcopy(resource("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    assert "readinessProbes" in (k8s_errors(deployment) or "")


def test_kustomization_lists_every_manifest_once():
    kustomization = resource("Kustomization")
    listed = kustomization["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert len(set(listed)) == len(listed)


def _serve_container(deployment: dict) -> dict:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _frontend_port(container: dict) -> int:
    argv = container["command"]
    assert argv[:2] == ["trtpipe", "serve"]
    return int(argv[argv.index("--port") + 1])


def _port_number(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p.get("name") == port)


def test_probes_use_the_frontends_health_endpoints_on_its_port():
    container = _serve_container(resource("Deployment"))
    port = _frontend_port(container)
    expected = {"livenessProbe": "/health/live", "readinessProbe": "/health/ready", "startupProbe": "/health/ready"}
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert (get["path"], _port_number(container, get["port"])) == (path, port), probe
    service = resource("Service")
    http = next(p for p in service["spec"]["ports"] if p["name"] == "http")
    assert _port_number(container, http["targetPort"]) == port
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]["serve"]
    assert f"127.0.0.1:{port}/health/ready" in " ".join(compose["healthcheck"]["test"])
    assert f"{port}:{port}" in " ".join(compose["ports"])


def _shutdown_seconds() -> int:
    """What `trtpipe serve` takes after SIGTERM at most: the drain budget for in-flight requests, the
    frontend's graceful shutdown, then Triton's exit timeout plus the 10 s the launcher waits before
    killing it."""
    command = ROOT / "pipeline" / "trtpipe" / "commands" / "serve.py"  # read, not imported: only the numbers matter
    process = ROOT / "pipeline" / "trtpipe" / "serve" / "process"
    drain = re.search(r'"--drain-timeout", default=(\d+)', command.read_text())
    graceful = re.search(r"timeout_graceful_shutdown=(\d+)", (process / "server.py").read_text())
    exit_timeout = re.search(r"exit_timeout_s: int = (\d+)", (process / "launcher.py").read_text())
    kill_wait = re.search(r"wait\(timeout=self\.exit_timeout_s \+ (\d+)\)", (process / "launcher.py").read_text())
    assert drain and graceful and exit_timeout and kill_wait, "serve's shutdown timeouts moved; update this test"
    return int(drain.group(1)) + int(graceful.group(1)) + int(exit_timeout.group(1)) + int(kill_wait.group(1))


def test_termination_grace_covers_the_prestop_drain_and_the_servers_shutdown():
    pod = resource("Deployment")["spec"]["template"]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    sleep = re.fullmatch(r"sleep (\d+)", pre_stop[-1])
    assert pre_stop[:2] == ["sh", "-c"] and sleep, pre_stop
    drain = int(sleep.group(1))
    # Readiness fails within periodSeconds * failureThreshold: the drain must outlast it.
    readiness = pod["containers"][0]["readinessProbe"]
    assert drain >= readiness["periodSeconds"] * readiness["failureThreshold"]
    assert pod["terminationGracePeriodSeconds"] >= drain + _shutdown_seconds()
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]["serve"]
    assert int(compose["stop_grace_period"].rstrip("s")) >= _shutdown_seconds()


def _exported_series() -> set[str]:
    """Every series name the frontend's /metrics can carry: its families (histograms as _bucket/_sum/_count,
    counters as _total) and the live-state gauges with their vLLM aliases."""
    from trtpipe.serve.api.metrics import VLLM_ALIASES, FrontendMetrics
    from trtpipe.serve.api.triton_metrics import KV_USAGE_SERIES

    names: set[str] = set(VLLM_ALIASES) | {a for aliases in VLLM_ALIASES.values() for a in aliases}
    names |= set(KV_USAGE_SERIES)  # derived from Triton's metrics, mirrored into the frontend's
    for family in FrontendMetrics().registry.collect():
        names.add(family.name)
    suffixed = set()
    for name in names:
        suffixed |= {name, f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_total"}
    return suffixed


def test_the_hpa_metric_is_one_the_frontend_exports_through_the_adapter_rule():
    hpa = resource("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == resource("Deployment")["metadata"]["name"]
    [metric] = hpa["spec"]["metrics"]
    wanted = metric["pods"]["metric"]["name"]
    rules = yaml.safe_load(resource("ConfigMap", "trtpipe-prometheus-adapter-rules")["data"]["rules.yaml"])["rules"]
    exported = _exported_series()
    assert {"vllm:num_requests_waiting", "trtpipe_num_requests_waiting"} <= exported
    served = {}
    for rule in rules:
        series = rule["seriesQuery"].strip("'").split("{")[0]
        assert series in exported, f"adapter rule reads {series}, which the frontend does not export"
        as_name = re.sub(rule["name"]["matches"], rule["name"]["as"].replace("${1}", r"\1"), series)
        served[as_name] = series
    assert wanted in served, f"the HPA scales on {wanted}; the adapter serves {sorted(served)}"
    assert served[wanted] == "vllm:num_requests_waiting"


def test_a_disruption_budget_guards_the_serving_pods():
    pdb = resource("PodDisruptionBudget")
    labels = resource("Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert pdb["spec"].get("maxUnavailable") == 1 and "minAvailable" not in pdb["spec"]
    assert resource("Service")["spec"]["selector"].items() <= labels.items()


def test_the_image_sets_the_paths_the_gpu_path_reads():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM ${TRTPIPE_BASE_IMAGE}" in dockerfile  # test_toolchain.py: its value
    for var, path in (("TRTPIPE_TRTLLM_EXAMPLES", "/app/examples"),
                      ("TRTPIPE_TRTLLM_MODELS", "/app/all_models/inflight_batcher_llm")):
        assert f"{var}={path}" in dockerfile
    for script in ("models/core/llama/convert_checkpoint.py", "quantization/quantize.py"):
        assert f"test -f /app/examples/{script}" in dockerfile
    for kind in ("preprocessing", "postprocessing"):
        assert f"test -f /app/all_models/inflight_batcher_llm/{kind}/1/model.py" in dockerfile


def test_triton_metrics_are_scraped_through_the_frontends_port_and_nowhere_else():
    # `trtpipe serve` binds Triton's metrics port to loopback and mirrors it into the frontend's /metrics
    # (serve/api/triton_metrics.py): one target, and no manifest publishes a port nothing listens on.
    prometheus = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]["serve"]
    assert targets == [f"serve:{_frontend_port(_compose_as_container(compose))}"]
    assert not any("8002" in p for p in compose["ports"])
    container = _serve_container(resource("Deployment"))
    assert [p["containerPort"] for p in container["ports"]] == [_frontend_port(container)]
    assert [p["targetPort"] for p in resource("Service")["spec"]["ports"]] == ["http"]
    from trtpipe.serve.process.launcher import TritonServer
    from trtpipe.serve.process.trt_launch import triton_launch_argv

    assert "--metrics-address=127.0.0.1" in TritonServer(ROOT).argv(_NoInstall())
    assert "--metrics-address=127.0.0.1" in triton_launch_argv("/m", 1, _Ports(), engine_models=["m-engine"])


class _NoInstall:
    binary, backend_dir = "tritonserver", None


class _Ports:
    http, grpc, metrics = 8000, 8001, 8002


def _compose_as_container(service: dict) -> dict:
    return {"command": service["command"]}


def _nightly_containers() -> dict[str, dict]:
    pod = resource("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["initContainers"] + pod["containers"]}


def test_only_build_and_bench_gate_take_a_gpu_and_promote_publishes_without_building():
    steps = _nightly_containers()
    assert list(steps) == ["build", "bench-gate", "promote", "rollout", "finish"]
    gpu = {name for name, c in steps.items() if "nvidia.com/gpu" in c.get("resources", {}).get("requests", {})}
    assert gpu == {"build", "bench-gate"}
    script = steps["promote"]["command"][-1]
    assert "python3 -m trtpipe.repo.promote llama-8b" in script and "trtpipe build" not in script


def test_the_kubectl_image_is_the_kubernetes_projects_pinned_by_digest():
    image = _nightly_containers()["rollout"]["image"]
    assert re.fullmatch(r"registry\.k8s\.io/kubectl:v1\.\d+\.\d+@sha256:[0-9a-f]{64}", image), image
    assert "bitnami" not in (K8S / "nightly-rebuild.yaml").read_text()


def _run_step(step: str, tmp_path, *, status_ok: bool = True, promoted: bool = True) -> tuple[int, list[str]]:
    """Run one nightly container's script with stand-in kubectl/trtpipe that record their arguments."""
    import subprocess

    home, bin_dir, calls = tmp_path / "home", tmp_path / "bin", tmp_path / "calls"
    (home / "nightly").mkdir(parents=True, exist_ok=True)
    (home / "bench" / "tonight").mkdir(parents=True, exist_ok=True)
    (home / "bench" / ".candidate").write_text(str(home / "bench" / "tonight"))
    if promoted:
        (home / "nightly" / "promoted").touch()
    bin_dir.mkdir(exist_ok=True)
    for tool in ("kubectl", "trtpipe"):
        fail = 'case "$*" in "rollout status"*) exit 1;; esac' if tool == "kubectl" and not status_ok else ""
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\n{fail}\nexit 0\n')
        (bin_dir / tool).chmod(0o755)
    argv = _nightly_containers()[step]["command"]
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "TRTPIPE_HOME": str(home)}
    rc = subprocess.run(argv, env=env, capture_output=True, text=True).returncode
    return rc, calls.read_text().splitlines() if calls.exists() else []


def test_a_failed_rollout_is_undone_and_the_live_repository_rolled_back(tmp_path):
    rc, calls = _run_step("rollout", tmp_path, status_ok=False)
    assert rc == 0 and calls == ["kubectl rollout restart deployment/trtpipe-llama-8b",
                                 "kubectl rollout status deployment/trtpipe-llama-8b --timeout=30m",
                                 "kubectl rollout undo deployment/trtpipe-llama-8b"]
    assert (tmp_path / "home" / "nightly" / "rollout-failed").exists()
    rc, calls = _run_step("finish", tmp_path)
    assert rc == 1 and calls[-1] == f"trtpipe rollback llama-8b --repo {tmp_path}/home/model_repository"
    assert not (tmp_path / "home" / "bench" / "baseline").exists()  # the failed build does not become the baseline


def test_a_completed_rollout_keeps_the_promotion_and_its_bench_becomes_the_baseline(tmp_path):
    rc, calls = _run_step("rollout", tmp_path, status_ok=True)
    assert rc == 0 and "kubectl rollout undo deployment/trtpipe-llama-8b" not in calls
    rc, calls = _run_step("finish", tmp_path)
    assert rc == 0 and not any("rollback" in c for c in calls)
    assert (tmp_path / "home" / "bench" / "baseline").is_dir()


def test_nothing_promoted_means_no_rollout_and_no_rollback(tmp_path):
    rc, calls = _run_step("rollout", tmp_path, promoted=False)
    assert (rc, calls) == (0, [])
    assert _run_step("finish", tmp_path, promoted=False) == (0, [])
