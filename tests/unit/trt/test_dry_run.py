"""`trtpipe build CONFIG --dry-run`: the commands, keys and files a build would run and write.

These tests pin what the dry run prints for the GPU configs (llama-8b: FP8, TP 1, with its draft;
llama-70b: FP8, TP 4) and check that printing it touches no network, cache or repository. They check
what we would run; they run no TensorRT-LLM tool (that needs the NGC image and a GPU).
"""

from __future__ import annotations

import shlex
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from trtpipe.backend_registry import get_backend
from trtpipe.build import _is_passthrough, build, run_stages
from trtpipe.cache import Artifact, ArtifactCache, cache_key
from trtpipe.cli import cli
from trtpipe.config import load_config
from trtpipe.dry_run import describe_build

MODELS = "/app/all_models/inflight_batcher_llm"


@pytest.fixture
def env(tmp_path, monkeypatch) -> Path:
    """An empty TRTPIPE_HOME, no tool overrides, no token, cwd = tmp_path; returns the repository path."""
    monkeypatch.setenv("TRTPIPE_HOME", str(tmp_path / "home"))
    for var in ("TRTPIPE_PYTHON", "TRTPIPE_TRTLLM_EXAMPLES", "TRTPIPE_TRTLLM_BUILD", "TRTPIPE_TRITONSERVER",
                "TRTPIPE_MPIRUN", "TRTPIPE_TRTLLM_MODELS", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "repo"


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the dry run opened a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def keys(name: str, overrides: list[str] = ()) -> dict[str, str]:
    """The stage keys build() computes: the stages' own key functions, chained as run_stages chains them."""
    config, cache = load_config(name, list(overrides)), ArtifactCache()
    artifacts: dict[str, Artifact] = {}
    previous, out = None, {}
    for stage in get_backend(config.backend).stages:
        if _is_passthrough(stage, config):
            artifacts[stage.name] = previous
            continue
        key = cache_key({"stage": stage.name, "version": stage.version, **stage.key_inputs(config, artifacts)})
        artifacts[stage.name] = previous = Artifact(stage.name, key, cache.entry_dir(stage.name, key))
        out[stage.name] = key
    return out


def commands(text: str) -> list[list[str]]:
    return [shlex.split(line.strip()[2:]) for line in text.splitlines() if line.strip().startswith("$ ")]


def build_argv(ckpt: str, tmp: str, batch: str, extra: list[str], workers: str) -> list[str]:
    return ["trtllm-build", "--checkpoint_dir", ckpt, "--output_dir", tmp, "--max_batch_size", batch,
            "--max_input_len", "7168", "--max_seq_len", "8192", "--max_num_tokens", "8192", "--max_beam_width", "1",
            "--kv_cache_type", "paged", "--tokens_per_block", "32", "--gpt_attention_plugin", "auto",
            "--gemm_plugin", "auto", "--remove_input_padding", "enable", "--context_fmha", "enable",
            "--use_paged_context_fmha", "enable", "--use_fp8_context_fmha", "enable", *extra,
            "--output_timing_cache", f"{tmp}/timing.cache", "--workers", workers]


def quantize_argv(hf: str, tmp: str, tp: str) -> list[str]:
    return ["python3", "/app/examples/quantization/quantize.py", "--model_dir", hf, "--output_dir", tmp,
            "--dtype", "bfloat16", "--qformat", "fp8", "--kv_cache_dtype", "fp8", "--calib_dataset", "cnn_dailymail",
            "--calib_size", "512", "--seed", "0", "--tp_size", tp, "--pp_size", "1"]


def tokenizer_info_argv(hf: str, tmp: str) -> list[str]:
    return ["python3", "/app/examples/generate_xgrammar_tokenizer_info.py", "--model_dir", hf, "--output_dir", tmp]


def test_llama_8b_runs_the_drafts_chain_then_its_own_with_draft_token_verification(env, tmp_path, no_network):
    text = describe_build(load_config("llama-8b"), env)
    art = tmp_path / "home" / "artifacts"
    d, t = keys("llama-3.2-1b-draft"), keys("llama-8b")

    def tmp(stage: str, key: str) -> str:
        return f"{art}/{stage}/.tmp-{key[:16]}-<pid>-<ns>"

    assert commands(text) == [
        quantize_argv(f"{art}/fetch/{d['fetch']}", tmp("convert", d["convert"]), "1"),
        build_argv(f"{art}/convert/{d['convert']}", tmp("compile", d["compile"]), "64", [], "1"),
        # Guided decoding (serving.guided_decoding: xgrammar): the tokenizer info the C++ backend loads.
        tokenizer_info_argv(f"{art}/fetch/{d['fetch']}", tmp("tokenizer_info", d["tokenizer_info"])),
        quantize_argv(f"{art}/fetch/{t['fetch']}", tmp("convert", t["convert"]), "1"),
        build_argv(f"{art}/convert/{t['convert']}", tmp("compile", t["compile"]), "64",
                   ["--speculative_decoding_mode", "draft_tokens_external", "--max_draft_len", "4"], "1"),
        tokenizer_info_argv(f"{art}/fetch/{t['fetch']}", tmp("tokenizer_info", t["tokenizer_info"])),
        # How trtpipe would serve the pair: one tritonserver, orchestrator mode (target + draft engines).
        ["TRTLLM_ORCHESTRATOR=1", "TRTLLM_ORCHESTRATOR_SPAWN_PROCESSES=1", "/opt/tritonserver/bin/tritonserver",
         f"--model-repository={env}", "--grpc-port=8001", "--http-port=8000", "--metrics-port=8002",
         "--metrics-address=127.0.0.1", "--pinned-memory-pool-byte-size=0", "--enable-peer-access=false", "--cuda-memory-pool-byte-size=0:0",
         # Explicit model control, everything loaded at start: publish/rollback reload through the API.
         "--model-control-mode=explicit", "--load-model=*",
         "--disable-auto-complete-config", "--backend-config=python,shm-region-prefix-name=prefix0_"],
    ]
    # Build order: the draft's whole chain and publish, then the target's.
    order = [line for line in text.splitlines() if line[:2] in ("==", "1.", "2.", "3.", "4.", "5.", "6.")]
    assert [line.split("  ")[0] for line in order] == [
        "== llama-3.2-1b-draft: the draft of llama-8b, built and published first, as its own model ==",
        "1. fetch", "2. convert", "3. quantize", "4. compile", "5. tokenizer_info", "6. publish",
        "== llama-8b ==", "1. fetch", "2. convert", "3. quantize", "4. compile", "5. tokenizer_info", "6. publish"]
    for key in (*d.values(), *t.values()):
        assert f"key {key}  [would run]" in text
    assert "download meta-llama/Llama-3.1-8B-Instruct@0e9e39f249a16976918f6564b8830bc894c89659 (a commit sha" in text
    assert f"renamed to {art}/fetch/{t['fetch']}/" in text
    assert "max_seq_len=8196" in text and "max_draft_len=4" in text and "draft_tokens_external" in text
    assert "HF_TOKEN from the environment (not set; never printed or stored)" in text


def test_llama_8b_publish_lists_both_model_sets_and_the_configs_naming_each_other(env, no_network):
    text = describe_build(load_config("llama-8b"), env)
    repo = str(env)
    for model in ("llama-3.2-1b-draft", "llama-8b"):
        assert f"6. publish  {model} as version 1 into {repo} (first version)" in text
        for kind in ("engine", "preprocessing", "postprocessing", "ensemble"):
            assert f"writes {repo}/{model}-{kind}/.staging-1/, renamed to {repo}/{model}-{kind}/1/" in text
            assert f"--- {repo}/{model}-{kind}/config.pbtxt" in text
        assert f'string_value: "{repo}/{model}-engine/1/engine"' in text
        assert f"model.py (copied from {MODELS}/preprocessing/1/model.py, which is in the image, not here)" in text
    assert "requires llama-3.2-1b-draft-engine live in" in text
    assert 'key: "trtpipe_draft_model_name"\n' in text and 'string_value: "llama-3.2-1b-draft-engine"' in text


def test_llama_8b_shows_guided_decoding_the_tokenizer_info_step_and_the_config_naming_its_file(env, tmp_path,
                                                                                             no_network):
    text = describe_build(load_config("llama-8b"), env)
    art, t = tmp_path / "home" / "artifacts", keys("llama-8b")
    tmp = f"{art}/tokenizer_info/.tmp-{t['tokenizer_info'][:16]}-<pid>-<ns>"
    # The step links the engine, runs TensorRT-LLM's script offline and checks what the backend will read.
    assert f"5. tokenizer_info  key {t['tokenizer_info']}  [would run]" in text
    assert f"in-process: link the files of {art}/compile/{t['compile']} (the engine) into <tmp>" in text
    assert "env: HF_HUB_OFFLINE=1" in text and f"log: {tmp}.log" in text
    assert "verify: <tmp>/xgrammar_tokenizer_info.json holds encoded_vocab, tokenizer_str, stop_token_ids" in text
    # Published in the version; the engine config names it by its absolute path, with xgrammar as the backend.
    assert "engine/ (the tokenizer_info artifact's files, hard-linked)" in text
    engine = f"{env}/llama-8b-engine/1/engine"
    assert ('key: "guided_decoding_backend"\n       value {\n         string_value: "xgrammar"' in text)
    assert (f'key: "xgrammar_tokenizer_info_path"\n       value {{\n         string_value: '
            f'"{engine}/xgrammar_tokenizer_info.json"' in text)
    assert '"guided_decoding": "xgrammar"' in text  # spec.json: the frontend sends guides to this model
    assert "spec.json: guided_decoding xgrammar: the frontend sends response_format, forced tool calls" in text


def test_guided_decoding_none_skips_the_tokenizer_info_step_and_writes_it_off(env, no_network):
    text = describe_build(load_config("llama-70b", ["serving.guided_decoding=none"]), env)
    assert "5. tokenizer_info  pass-through (serving.guided_decoding: none)" in text
    assert "generate_xgrammar_tokenizer_info.py" not in text
    # text_format prints an empty string value as `value { }`: the key is there, empty (guided decoding off).
    assert 'key: "xgrammar_tokenizer_info_path"\n       value {\n       }' in text
    assert '"guided_decoding": null' in text  # spec.json: the frontend refuses guided requests with a 400
    assert "spec.json: guided_decoding off (serving.guided_decoding: none): the frontend answers" in text


def test_llama_70b_is_quantized_and_built_for_four_ranks_and_served_by_one_mpirun(env, tmp_path, no_network):
    text = describe_build(load_config("llama-70b"), env)
    art = tmp_path / "home" / "artifacts"
    k = keys("llama-70b")
    tmp_convert = f"{art}/convert/.tmp-{k['convert'][:16]}-<pid>-<ns>"
    tmp_compile = f"{art}/compile/.tmp-{k['compile'][:16]}-<pid>-<ns>"
    [quantize, trtllm_build, tokenizer_info, launch] = commands(text)
    assert quantize == quantize_argv(f"{art}/fetch/{k['fetch']}", tmp_convert, "4")
    assert trtllm_build == build_argv(f"{art}/convert/{k['convert']}", tmp_compile, "128", [], "4")
    assert tokenizer_info == tokenizer_info_argv(f"{art}/fetch/{k['fetch']}",
                                                 f"{art}/tokenizer_info/.tmp-{k['tokenizer_info'][:16]}-<pid>-<ns>")
    rank = ["/opt/tritonserver/bin/tritonserver", f"--model-repository={env}", "--grpc-port=8001",
            "--http-port=8000", "--metrics-port=8002", "--metrics-address=127.0.0.1"]
    tail = ["--disable-auto-complete-config", "--backend-config=python,shm-region-prefix-name=prefix{}_"]
    expected = ["mpirun", "--allow-run-as-root"]
    for r in range(4):
        expected += ([":"] if r else []) + ["-n", "1"] + rank
        # Rank 0 loads the whole repository, ranks > 0 the engine only; explicit control everywhere.
        expected += ["--model-control-mode=explicit", "--load-model=llama-70b-engine" if r else "--load-model=*"]
        expected += [tail[0], tail[1].format(r)]
    assert launch == expected
    assert "exactly rank0.engine rank1.engine rank2.engine rank3.engine" in text
    assert "leader mode" in text and "== llama-3.2-1b-draft" not in text


def test_the_dry_run_writes_nothing(env, tmp_path, no_network):
    before = sorted(tmp_path.rglob("*"))
    for name in ("llama-8b", "llama-70b", "tiny-llama"):
        describe_build(load_config(name), env)
    assert sorted(tmp_path.rglob("*")) == before  # no cache, no repository, no logs


def test_a_branch_revision_is_resolved_at_build_time_not_looked_up(env, no_network):
    text = describe_build(load_config("llama-70b", ["source.revision=main"]), env)
    assert "download meta-llama/Llama-3.1-70B-Instruct@main (a branch or tag, <resolved at build time>)" in text
    for stage in ("fetch", "convert", "compile"):
        assert f"{stage}  key <resolved at build time>" in text
    assert "--model_dir '" in text and "/fetch/<resolved at build time>'" in text


def test_tiny_llama_keys_are_the_keys_the_build_uses_and_cached_stages_are_marked(env, tmp_path):
    config = load_config("tiny-llama")
    text = describe_build(config, env)
    assert commands(text) == []  # the reference backend runs in-process
    _, records = run_stages(config, ArtifactCache())
    for r in records:
        if not r.meta.get("passthrough"):
            assert f"{r.stage}  key {r.key}  [would run]" in text
    again = describe_build(config, env)
    for r in records:
        if not r.meta.get("passthrough"):
            assert f"{r.stage}  key {r.key}  [cached: would be skipped]" in again


def test_publish_names_the_next_version_or_says_unchanged(env):
    build(load_config("tiny-llama"), env)
    assert "5. publish  unchanged: live version 1 of tiny-llama-engine has this engine key" in \
        describe_build(load_config("tiny-llama"), env)
    text = describe_build(load_config("tiny-llama", ["engine.max_batch_size=8"]), env)
    assert f"5. publish  tiny-llama as version 2 into {env} (live now: 1)" in text
    assert "model.py (the Triton adapter" in text and "max_batch_size: 8" in text


def test_cli_dry_run_prints_the_description(env, no_network):
    result = CliRunner().invoke(cli, ["build", "llama-70b", "--dry-run", "--repo", str(env)])
    assert result.exit_code == 0, result.output
    assert "mpirun --allow-run-as-root" in result.output and "trtllm-build" in result.output
    assert not env.exists()
