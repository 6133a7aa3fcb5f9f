"""`trtpipe deploy dynamo`: the DynamoGraphDeployment (nvidia.com/v1alpha1) for a published trtllm-pytorch version.

One YAML stream, two objects: a ConfigMap with the LLM API arguments of each worker role (dynamo_worker.py says
why they are not the version's own file), and the graph Dynamo's operator turns into pods:

    Frontend            dynamo.frontend (OpenAI API on :8000, KV-aware router), no GPU
    TRTLLMWorker        aggregated: prefill and decode in one worker         } dynamo.trtllm on GPUs, the
    or TRTLLMPrefill +  disaggregated (--disaggregated): prefill workers     } published checkpoint from the
       TRTLLMDecode     hand their KV cache to decode workers                } trtpipe-home claim

The artifact comes from the PersistentVolumeClaim docker/k8s/pvc.yaml already defines (`trtpipe-home`, mounted at
TRTPIPE_HOME = /var/lib/trtpipe as in deployment.yaml), declared as an existing claim (`create: false`) in the
graph's `pvcs` and mounted through each worker's `volumeMounts`. GPUs per worker are the config's tp * pp; a worker
needing more GPUs than one node has becomes a multinode worker (`multinode.nodeCount`, on paper: nothing here ran on
a cluster). Probes follow Dynamo 1.6.1's own examples: the frontend's /health on its HTTP port, the workers' /live
and /health on DYN_SYSTEM_PORT, and a startup probe that gives a worker 15 minutes to load its weights before the
others count (the serving Deployment's budget, deployment.yaml).

The schema is the operator's CRD, v1alpha1 (deprecated since Dynamo 1.5 in favour of v1beta1, still served):
tests/unit/deploy/ validate every graph written here against it, offline.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

from trtpipe.deploy.dynamo_worker import (AGGREGATED, DECODE, ENGINE_ARGS_MOUNT, PREFILL, SYSTEM_PORT, FRONTEND_PORT,
                                          PublishedArtifact, engine_args_file, engine_args_yaml, frontend_argv,
                                          worker_argv)
from trtpipe.deploy.source import POD_HOME, POD_REPO
from trtpipe.errors import ConfigError
from trtpipe.trt.toolchain import DYNAMO

API_VERSION = "nvidia.com/v1alpha1"
KIND = "DynamoGraphDeployment"
CLAIM = "trtpipe-home"  # docker/k8s/pvc.yaml
ENGINE_ARGS_VOLUME = "engine-args"
DEFAULT_GPUS_PER_NODE = 8
# Kubernetes names the operator derives pod and service names from: a DNS label, with room for its suffixes.
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = 40
SERVICE_NAMES = {AGGREGATED: "TRTLLMWorker", PREFILL: "TRTLLMPrefillWorker", DECODE: "TRTLLMDecodeWorker"}
# The serving Deployment's sizes (docker/k8s/deployment.yaml), per worker pod; the frontend holds no weights.
WORKER_RESOURCES = {"requests": {"cpu": "8", "memory": "64Gi"}, "limits": {"memory": "96Gi"}}
FRONTEND_RESOURCES = {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}}
SHARED_MEMORY = "16Gi"  # TensorRT-LLM's ranks talk through /dev/shm; deployment.yaml's dshm size


@dataclass(frozen=True)
class Topology:
    """How many of each component: `replicas` aggregated workers, or (disaggregated) `replicas` decode and
    `prefill_replicas` prefill workers."""

    disaggregated: bool = False
    replicas: int = 1
    prefill_replicas: int = 1
    frontend_replicas: int = 1
    gpus_per_node: int = DEFAULT_GPUS_PER_NODE

    @property
    def roles(self) -> tuple[str, ...]:
        return (PREFILL, DECODE) if self.disaggregated else (AGGREGATED,)

    def replicas_of(self, role: str) -> int:
        return self.prefill_replicas if role == PREFILL else self.replicas


def deployment_name(model: str, name: str | None = None) -> str:
    chosen = name or f"trtpipe-{model}".lower().replace(".", "-").replace("_", "-")
    if not NAME.match(chosen) or len(chosen) > MAX_NAME:
        raise ConfigError(f"{chosen!r} cannot name a DynamoGraphDeployment: it must be lowercase letters, digits "
                          f"and '-', start and end with a letter or digit, at most {MAX_NAME} characters",
                          where="deploy dynamo --name", fix="pass --name with such a name")
    return chosen


def _labels(artifact: PublishedArtifact) -> dict[str, str]:
    return {"app.kubernetes.io/name": "trtpipe", "app.kubernetes.io/instance": artifact.config.name.replace(".", "-")}


def _http_probe(path: str, port: int, period: int, failures: int, timeout: int = 5) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "timeoutSeconds": timeout,
            "failureThreshold": failures}


def _gpus(artifact: PublishedArtifact, topology: Topology) -> tuple[int, int | None]:
    """(GPUs per pod, nodes per worker or None for a one-node worker)."""
    world, per_node = artifact.gpus_per_worker, topology.gpus_per_node
    if world <= per_node:
        return world, None
    if world % per_node:
        raise ConfigError(f"{artifact.config.name} needs {world} GPUs per worker (tp {artifact.config.parallelism.tp} "
                          f"x pp {artifact.config.parallelism.pp}), which {per_node} GPUs per node do not divide",
                          where="deploy dynamo --gpus-per-node",
                          fix="give the GPUs per node of the cluster, or build with a tp * pp they divide")
    return per_node, math.ceil(world / per_node)


def config_map(artifact: PublishedArtifact, topology: Topology, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"{name}-engine-args", "labels": _labels(artifact)},
            "data": {engine_args_file(role): engine_args_yaml(artifact, role) for role in topology.roles}}


def _frontend(topology: Topology) -> dict[str, Any]:
    return {"componentType": "frontend", "replicas": topology.frontend_replicas,
            "resources": FRONTEND_RESOURCES,
            "livenessProbe": _http_probe("/health", FRONTEND_PORT, period=10, failures=3),
            "readinessProbe": _http_probe("/health", FRONTEND_PORT, period=5, failures=2),
            "extraPodSpec": {"mainContainer": {"name": "main", "image": DYNAMO.frontend_image,
                                               "command": frontend_argv()[:1], "args": frontend_argv()[1:]}}}


def _worker(artifact: PublishedArtifact, topology: Topology, role: str, name: str) -> dict[str, Any]:
    gpus, nodes = _gpus(artifact, topology)
    argv = worker_argv(artifact, role)
    service: dict[str, Any] = {"componentType": "worker"}
    if role != AGGREGATED:
        service["subComponentType"] = role
    service |= {
        "replicas": topology.replicas_of(role),
        "resources": {"requests": {**WORKER_RESOURCES["requests"], "gpu": str(gpus)},
                      "limits": {**WORKER_RESOURCES["limits"], "gpu": str(gpus)}},
        "envs": [{"name": "DYN_SYSTEM_PORT", "value": str(SYSTEM_PORT)},
                 # The worker is healthy once its generate endpoint answers (Dynamo 1.6.1's examples).
                 {"name": "DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS", "value": '["generate"]'}],
        "livenessProbe": _http_probe("/live", SYSTEM_PORT, period=10, failures=3),
        "readinessProbe": _http_probe("/health", SYSTEM_PORT, period=10, failures=3),
        "sharedMemory": {"size": SHARED_MEMORY},
        "volumeMounts": [{"name": CLAIM, "mountPoint": POD_HOME}],
        "extraPodSpec": {
            "volumes": [{"name": ENGINE_ARGS_VOLUME, "configMap": {"name": f"{name}-engine-args"}}],
            "mainContainer": {
                "name": "main", "image": DYNAMO.worker_image, "command": argv[:3], "args": argv[3:],
                # Loading the weights takes minutes: liveness and readiness count only after this succeeds.
                "startupProbe": _http_probe("/health", SYSTEM_PORT, period=10, failures=90),
                "volumeMounts": [{"name": ENGINE_ARGS_VOLUME, "mountPath": ENGINE_ARGS_MOUNT, "readOnly": True}]}},
    }
    if nodes is not None:
        service["multinode"] = {"nodeCount": nodes}
    return service


def graph(artifact: PublishedArtifact, topology: Topology, name: str) -> dict[str, Any]:
    c = artifact.config
    services = {"Frontend": _frontend(topology)}
    for role in topology.roles:
        services[SERVICE_NAMES[role]] = _worker(artifact, topology, role, name)
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": name, "labels": _labels(artifact),
                         "annotations": {"trtpipe.dev/model": c.name, "trtpipe.dev/version": str(artifact.version),
                                         "trtpipe.dev/dynamo": DYNAMO.dynamo,
                                         "trtpipe.dev/tensorrt-llm": DYNAMO.tensorrt_llm}},
            "spec": {"backendFramework": "trtllm",
                     "pvcs": [{"name": CLAIM, "create": False}],
                     "services": services}}


def command_line(artifact: PublishedArtifact, topology: Topology, from_config: bool, name: str | None = None) -> str:
    """The `trtpipe deploy dynamo` command that writes this deployment (for the file's header)."""
    parts = ["trtpipe deploy dynamo", artifact.config.name]
    if from_config:
        parts += ["--config", artifact.config.name]
    parts += ["--version", str(artifact.version)]
    if topology.disaggregated:
        parts += ["--disaggregated", "--prefill-replicas", str(topology.prefill_replicas)]
    if topology.replicas != 1:
        parts += ["--replicas", str(topology.replicas)]
    if topology.gpus_per_node != DEFAULT_GPUS_PER_NODE:
        parts += ["--gpus-per-node", str(topology.gpus_per_node)]
    if name is not None:
        parts += ["--name", name]
    if artifact.pod_repo != POD_REPO:
        parts += ["--pod-repo", artifact.pod_repo]
    return " ".join(parts)


def render(artifact: PublishedArtifact, topology: Topology, name: str, command: str) -> str:
    """The YAML stream `kubectl apply -f` takes: the ConfigMap, then the graph."""
    c = artifact.config
    header = (f"# {c.name} version {artifact.version} on NVIDIA Dynamo {DYNAMO.dynamo}: Dynamo's frontend (KV-aware router) "
              f"and {'prefill + decode' if topology.disaggregated else 'aggregated'} TensorRT-LLM workers "
              f"({DYNAMO.worker_image}, TensorRT-LLM {DYNAMO.tensorrt_llm}), {artifact.gpus_per_worker} GPU(s) per worker.\n"
              f"# Written by `{command}`; do not edit by hand. Needs the Dynamo operator and the {CLAIM} claim "
              f"(docker/k8s/pvc.yaml) holding the published version.\n")
    docs = [config_map(artifact, topology, name), graph(artifact, topology, name)]
    return header + "---\n".join(yaml.dump(d, Dumper=_Dumper, sort_keys=False, width=120) for d in docs)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the engine arguments in the ConfigMap) as literal blocks, so the file reads as YAML; a
    value used twice is written twice, not as a YAML alias."""

    def ignore_aliases(self, data) -> bool:
        return True


_Dumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None))
