"""`trtpipe deploy dynamo`: the DynamoGraphDeployment validated offline against the Dynamo operator's CRD schema
(v1alpha1, tests/data/dynamo/, an excerpt whose header says where it came from), the ConfigMap against Kubernetes'
own schema (kubernetes-validate, strict), the committed examples under docker/k8s/dynamo/ against the command, and
the refusals. Nothing here talks to a cluster, pulls an image or runs TensorRT-LLM."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.unit.test_cli import trtpipe
from trtpipe.config import load_config
from trtpipe.deploy import source
from trtpipe.deploy.dynamo_graph import Topology, command_line, graph, render
from trtpipe.deploy.dynamo_worker import PublishedArtifact
from trtpipe.manifest import Manifest
from trtpipe.trt.toolchain import DYNAMO

ROOT = Path(__file__).resolve().parents[3]
CRD = ROOT / "tests" / "data" / "dynamo" / "nvidia.com_dynamographdeployments.v1alpha1.excerpt.yaml"
EXAMPLES = ROOT / "docker" / "k8s" / "dynamo"
# The committed examples: file -> the command line that writes it.
EXAMPLE_COMMANDS = {
    "llama-8b-pytorch.yaml": ["llama-8b-pytorch", "--config", "llama-8b-pytorch", "--version", "1"],
    "llama-70b-pytorch.yaml": ["llama-70b-pytorch", "--config", "llama-70b-pytorch", "--version", "1",
                               "--disaggregated", "--prefill-replicas", "2", "--replicas", "2"],
}


def strict(schema):
    """The CRD's schema as JSON Schema with Kubernetes' field rules: an object that lists its properties takes no
    others (the API server prunes unknown fields and kubectl's strict field validation refuses them)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def crd_validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))


def crd_errors(doc: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in crd_validator().iter_errors(doc)]


def artifact(name: str, version: int = 1) -> PublishedArtifact:
    return source.from_config(name, version)


def documents(text: str) -> tuple[dict, dict]:
    config_map, dgd = [d for d in yaml.safe_load_all(text) if d]
    return config_map, dgd


TOPOLOGIES = [Topology(), Topology(disaggregated=True, replicas=3, prefill_replicas=2),
              Topology(replicas=4, gpus_per_node=2)]


@pytest.mark.parametrize("config", ["llama-8b-pytorch", "llama-70b-pytorch", "tinyllama-pytorch"])
@pytest.mark.parametrize("topology", TOPOLOGIES, ids=["aggregated", "disaggregated", "multinode"])
def test_every_graph_matches_the_operators_crd_and_the_config_map_kubernetes_schema(config, topology):
    a = artifact(config)
    config_map, dgd = documents(render(a, topology, "trtpipe-x", "trtpipe deploy dynamo x"))
    assert crd_errors(dgd) == []
    kubernetes_validate.validate(config_map, "1.30", strict=True)
    assert (dgd["apiVersion"], dgd["kind"], dgd["spec"]["backendFramework"]) == \
        ("nvidia.com/v1alpha1", "DynamoGraphDeployment", "trtllm")


def test_the_crd_check_can_fail_a_wrong_type_an_unknown_field_and_a_wrong_enum():
    dgd = graph(artifact("llama-8b-pytorch"), Topology(), "trtpipe-llama-8b-pytorch")
    assert crd_errors(dgd) == []
    wrong_type = copy.deepcopy(dgd)
    wrong_type["spec"]["services"]["TRTLLMWorker"]["replicas"] = "two"
    assert any("replicas" in e and "'two' is not of type 'integer'" in e for e in crd_errors(wrong_type))
    misspelled = copy.deepcopy(dgd)
    misspelled["spec"]["services"]["TRTLLMWorker"]["replica"] = 1
    assert any("'replica' was unexpected" in e for e in crd_errors(misspelled))
    gpus_as_int = copy.deepcopy(dgd)  # the CRD takes GPU counts as strings
    gpus_as_int["spec"]["services"]["TRTLLMWorker"]["resources"]["limits"]["gpu"] = 1
    assert crd_errors(gpus_as_int)
    framework = copy.deepcopy(dgd)
    framework["spec"]["backendFramework"] = "tensorrt"
    assert any("backendFramework" in e for e in crd_errors(framework))


def test_aggregated_graph_frontend_worker_gpus_volume_probes_and_images():
    a = artifact("llama-70b-pytorch")  # tp 4
    services = graph(a, Topology(replicas=3), "trtpipe-llama-70b-pytorch")["spec"]["services"]
    assert list(services) == ["Frontend", "TRTLLMWorker"]
    front, worker = services["Frontend"], services["TRTLLMWorker"]
    assert front["componentType"] == "frontend" and "gpu" not in front["resources"]["requests"]
    assert front["extraPodSpec"]["mainContainer"]["image"] == DYNAMO.frontend_image
    assert worker["componentType"] == "worker" and worker["replicas"] == 3
    assert worker["resources"]["limits"]["gpu"] == worker["resources"]["requests"]["gpu"] == "4"
    assert "multinode" not in worker
    main = worker["extraPodSpec"]["mainContainer"]
    assert main["image"] == DYNAMO.worker_image and main["command"] == ["python3", "-m", "dynamo.trtllm"]
    assert main["startupProbe"]["httpGet"]["path"] == "/health"
    assert worker["livenessProbe"]["httpGet"] == {"path": "/live", "port": 9090}
    assert {"name": "DYN_SYSTEM_PORT", "value": "9090"} in worker["envs"]
    assert worker["volumeMounts"] == [{"name": "trtpipe-home", "mountPoint": "/var/lib/trtpipe"}]
    assert "/var/lib/trtpipe/model_repository/llama-70b-pytorch-engine/1/engine/checkpoint" in main["args"]


def test_the_artifact_volume_is_the_claim_the_kubernetes_manifests_define():
    pvc = yaml.safe_load((ROOT / "docker" / "k8s" / "pvc.yaml").read_text())
    deployment = yaml.safe_load((ROOT / "docker" / "k8s" / "deployment.yaml").read_text())
    dgd = graph(artifact("llama-8b-pytorch"), Topology(), "trtpipe-llama-8b-pytorch")
    assert dgd["spec"]["pvcs"] == [{"name": pvc["metadata"]["name"], "create": False}]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    home = next(e["value"] for e in container["env"] if e["name"] == "TRTPIPE_HOME")
    assert dgd["spec"]["services"]["TRTLLMWorker"]["volumeMounts"][0]["mountPoint"] == home


def test_disaggregated_graph_has_prefill_and_decode_workers_with_their_own_engine_args():
    a = artifact("llama-70b-pytorch")
    text = render(a, Topology(disaggregated=True, replicas=3, prefill_replicas=2), "d", "cmd")
    config_map, dgd = documents(text)
    services = dgd["spec"]["services"]
    assert list(services) == ["Frontend", "TRTLLMPrefillWorker", "TRTLLMDecodeWorker"]
    prefill, decode = services["TRTLLMPrefillWorker"], services["TRTLLMDecodeWorker"]
    assert (prefill["subComponentType"], prefill["replicas"]) == ("prefill", 2)
    assert (decode["subComponentType"], decode["replicas"]) == ("decode", 3)
    assert sorted(config_map["data"]) == ["decode.yaml", "prefill.yaml"]
    for service, role in ((prefill, "prefill"), (decode, "decode")):
        args = service["extraPodSpec"]["mainContainer"]["args"]
        assert args[args.index("--disaggregation-mode") + 1] == role
        assert args[args.index("--extra-engine-args") + 1] == f"/etc/trtpipe/dynamo/{role}.yaml"
        assert service["extraPodSpec"]["volumes"][0]["configMap"]["name"] == config_map["metadata"]["name"]


def test_a_worker_wider_than_a_node_is_a_multinode_worker():
    dgd = graph(artifact("llama-70b-pytorch"), Topology(gpus_per_node=2), "m")
    worker = dgd["spec"]["services"]["TRTLLMWorker"]
    assert worker["multinode"] == {"nodeCount": 2} and worker["resources"]["limits"]["gpu"] == "2"
    assert crd_errors(dgd) == []


@pytest.mark.parametrize("file", sorted(EXAMPLE_COMMANDS))
def test_the_committed_examples_are_what_the_command_writes(file, tmp_path, capsys):
    code, out = trtpipe(capsys, "deploy", "dynamo", *EXAMPLE_COMMANDS[file], "--out", str(tmp_path))
    assert code == 0, out
    assert (tmp_path / file).read_text() == (EXAMPLES / file).read_text(), \
        f"docker/k8s/dynamo/{file} is stale: run trtpipe deploy dynamo {' '.join(EXAMPLE_COMMANDS[file])} --out " \
        "docker/k8s/dynamo"
    _, dgd = documents((EXAMPLES / file).read_text())
    assert crd_errors(dgd) == []
    assert f"`trtpipe deploy dynamo {' '.join(EXAMPLE_COMMANDS[file])}`" in (EXAMPLES / file).read_text()


def test_without_out_the_stream_goes_to_stdout_for_kubectl(capsys):
    code, out = trtpipe(capsys, "deploy", "dynamo", "llama-8b-pytorch", "--config", "llama-8b-pytorch",
                        "--version", "3")
    assert code == 0
    config_map, dgd = documents(out)
    assert dgd["metadata"]["annotations"]["trtpipe.dev/version"] == "3"
    assert "/llama-8b-pytorch-engine/3/engine/draft" in config_map["data"]["agg.yaml"]


# --- a version published in a local repository ----------------------------------------------------------------------

def publish_stand_in(repo: Path, config_name: str, versions: tuple[int, ...], live: int, draft: bool = True) -> None:
    """The files deploy reads of a published version (manifest, checkpoint dir, LLM API options, draft dir) and
    config.pbtxt naming the live one; no weights: nothing here loads them."""
    config = load_config(config_name)
    model_dir = repo / f"{config.name}-engine"
    for v in versions:
        engine = model_dir / str(v) / "engine"
        (engine / "checkpoint").mkdir(parents=True)
        if draft:
            (engine / "draft").mkdir()
        (engine / "llm_api_options.yaml").write_text("{}\n")
        Manifest(model_name=config.name, backend=config.backend, config=json.loads(config.model_dump_json()),
                 version=v).write(model_dir / str(v) / "manifest.json")
    (model_dir / "config.pbtxt").write_text(
        f'name: "{config.name}-engine"\nversion_policy {{ specific {{ versions: {live} }} }}\n')


def test_a_locally_published_version_is_read_from_its_manifest_live_by_default(tmp_path, capsys):
    repo = tmp_path / "repo"
    publish_stand_in(repo, "llama-8b-pytorch", (1, 2), live=2)
    code, out = trtpipe(capsys, "deploy", "dynamo", "llama-8b-pytorch", "--repo", str(repo))
    assert code == 0, out
    config_map, dgd = documents(out)
    assert dgd["metadata"]["annotations"]["trtpipe.dev/version"] == "2"
    assert "# Written by `trtpipe deploy dynamo llama-8b-pytorch --version 2`" in out
    assert crd_errors(dgd) == []
    code, out = trtpipe(capsys, "deploy", "dynamo", "llama-8b-pytorch", "--repo", str(repo), "--version", "1")
    assert code == 0 and "/llama-8b-pytorch-engine/1/engine/checkpoint" in out


def test_the_draft_path_is_written_only_when_the_version_holds_a_draft(tmp_path):
    repo = tmp_path / "repo"
    publish_stand_in(repo, "llama-8b-pytorch", (1,), live=1, draft=False)
    a = source.from_repository(repo, "llama-8b-pytorch", None)
    assert not a.has_draft
    config_map, _ = documents(render(a, Topology(), "n", "c"))
    assert "speculative_model:" not in config_map["data"]["agg.yaml"]


# --- refusals: one message each, with the fix, and the exit code of its class ----------------------------------------

def test_a_model_with_no_published_version_names_what_is_published_and_the_fix(tmp_path, capsys):
    repo = tmp_path / "repo"
    publish_stand_in(repo, "llama-8b-pytorch", (1,), live=1)
    code, out = trtpipe(capsys, "deploy", "dynamo", "llama-70b-pytorch", "--repo", str(repo))
    assert code == 1
    assert "model 'llama-70b-pytorch' has no published version" in out and "published: llama-8b-pytorch" in out
    assert "Fix: build it first (trtpipe build llama-70b-pytorch)" in out and "Traceback" not in out
    code, out = trtpipe(capsys, "deploy", "dynamo", "llama-8b-pytorch", "--repo", str(repo), "--version", "7")
    assert code == 1 and "has no version 7" in out and "live: 1" in out


def test_the_cpu_only_reference_engine_is_refused_with_the_one_host_and_the_gpu_alternatives(capsys):
    code, out = trtpipe(capsys, "deploy", "dynamo", "tiny-llama", "--config", "tiny-llama", "--version", "1")
    assert code == 3
    assert "reference engine, which runs on CPUs only" in out
    assert "trtpipe serve --dynamo" in out and "backend: trtllm-pytorch" in out


def test_a_tensorrt_engine_build_is_refused_with_the_llm_api_config_to_build(capsys):
    code, out = trtpipe(capsys, "deploy", "dynamo", "llama-8b", "--config", "llama-8b", "--version", "1")
    assert code == 3 and "backend 'trt-engine'" in out and "llama-8b-pytorch.yaml" in out


@pytest.mark.parametrize("argv,code,message", [
    (["llama-8b-pytorch", "--config", "llama-8b-pytorch"], 3, "add --version N"),
    (["llama-8b-pytorch", "--config", "llama-8b-pytorch", "--version", "1", "--prefill-replicas", "2"], 2,
     "add --disaggregated"),
    (["llama-8b-pytorch", "--config", "llama-70b-pytorch", "--version", "1"], 2, "builds 'llama-70b-pytorch'"),
    (["llama-8b-pytorch", "--config", "llama-8b-pytorch", "--version", "1", "--name", "Bad_Name"], 3,
     "cannot name a DynamoGraphDeployment"),
    (["llama-8b-pytorch", "--config", "llama-8b-pytorch", "--version", "0"], 2, "--version"),
    (["llama-8b-pytorch", "--config", "llama-8b-pytorch", "--version", "1", "--replicas", "0"], 2, "--replicas"),
    (["llama-70b-pytorch", "--config", "llama-70b-pytorch", "--version", "1", "--gpus-per-node", "3"], 3,
     "which 3 GPUs per node do not divide"),
])
def test_bad_flags_get_one_message_each(argv, code, message, capsys):
    got, out = trtpipe(capsys, "deploy", "dynamo", *argv)
    assert got == code, out
    assert message in out and "Traceback" not in out


def test_the_header_command_reproduces_non_default_choices():
    a = source.from_config("llama-8b-pytorch", 2, pod_repo="/mnt/repo")
    line = command_line(a, Topology(replicas=2, gpus_per_node=4), from_config=True, name="svc")
    assert line == ("trtpipe deploy dynamo llama-8b-pytorch --config llama-8b-pytorch --version 2 --replicas 2 "
                    "--gpus-per-node 4 --name svc --pod-repo /mnt/repo")
