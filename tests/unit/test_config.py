from pathlib import Path

import pytest

from trtpipe.config import load_config
from trtpipe.errors import ConfigError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_tiny_llama_config_loads_with_the_reference_backend_and_synthetic_source():
    config = load_config("tiny-llama")
    assert config.name == "tiny-llama"
    assert config.backend == "reference"
    assert config.source.synthetic == "tiny-llama"
    assert config.engine.tokens_per_block == 32


def test_extends_inherits_and_overrides_only_the_given_keys():
    draft = load_config("tiny-llama-draft")
    base = load_config("tiny-llama")
    assert draft.source.synthetic == "tiny-llama-draft"
    assert draft.engine == base.engine


def test_set_override_changes_one_nested_value():
    config = load_config("tiny-llama", ["engine.max_batch_size=8", "quantization.format=int8_wo"])
    assert config.engine.max_batch_size == 8
    assert config.quantization.format == "int8_wo"


def test_unknown_key_error_names_file_key_and_value(tmp_path):
    path = write(tmp_path, "bad", "name: bad\nsource: {synthetic: tiny-llama}\nengine: {max_batch_sise: 4}\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    message = str(err.value)
    assert str(path) in message and "engine.max_batch_sise: unknown key (found 4)" in message


def test_reference_backend_refuses_gpu_only_quantization_by_name(tmp_path):
    path = write(tmp_path, "q", "name: q\nsource: {synthetic: tiny-llama}\nquantization: {format: fp8}\n")
    with pytest.raises(ConfigError, match="'fp8' needs backend trt-engine or trtllm-pytorch; the reference backend supports int8_wo, int4_wo"):
        load_config(str(path))


def test_hf_source_without_revision_is_refused(tmp_path):
    path = write(tmp_path, "h", "name: h\nsource: {hf: org/model}\n")
    with pytest.raises(ConfigError, match="needs a pinned `revision`"):
        load_config(str(path))


def test_unknown_config_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="(?s)no build config named .nope.*tiny-llama"):
        load_config("nope")


def test_bad_set_syntax_says_how_to_write_it():
    with pytest.raises(ConfigError, match="write e.g. --set engine.max_batch_size=8"):
        load_config("tiny-llama", ["engine.max_batch_size"])


def test_stream_interval_reaches_the_serving_spec():
    from trtpipe.spec import ServingSpec

    assert ServingSpec.from_config(load_config("tiny-llama")).stream_interval == 1
    config = load_config("tiny-llama", ["serving.stream_interval=4"])
    assert ServingSpec.from_config(config).stream_interval == 4


def test_stream_interval_is_refused_for_the_tensorrtllm_backend():
    with pytest.raises(ConfigError) as err:
        load_config("llama-8b", ["serving.stream_interval=4"])
    assert "serving.stream_interval applies to the reference backend only" in str(err.value)


@pytest.mark.parametrize("name, default", [("tiny-llama", "llguidance"), ("tinyllama-trt", "xgrammar"),
                                           ("tinyllama-pytorch", "xgrammar")])
def test_guided_decoding_defaults_to_the_backends_library_and_none_turns_it_off(name, default):
    from trtpipe.backend_registry import get_backend

    config = load_config(name)
    backend = get_backend(config.backend)
    assert config.serving.guided_decoding is None
    assert backend.serving_spec(config).guided_decoding == default
    off = load_config(name, ["serving.guided_decoding=none"])
    assert backend.serving_spec(off).guided_decoding is None


@pytest.mark.parametrize("name, value, allowed", [("llama-8b", "llguidance", "xgrammar, none"),
                                                  ("tiny-llama", "xgrammar", "llguidance, none")])
def test_a_guided_decoding_library_the_backend_lacks_is_refused_naming_what_it_has(name, value, allowed):
    with pytest.raises(ConfigError, match=f"serving.guided_decoding '{value}' is not available on the .* backend; "
                                          f"use one of {allowed}"):
        load_config(name, [f"serving.guided_decoding={value}"])


def test_the_old_llm_api_guided_decoding_key_says_where_it_moved():
    with pytest.raises(ConfigError, match="llm_api.guided_decoding_backend is now serving.guided_decoding") as e:
        load_config("llama-8b-pytorch", ["llm_api.guided_decoding_backend=xgrammar"])
    assert "llama-8b-pytorch.yaml" in str(e.value) and "serving: {guided_decoding: xgrammar}" in str(e.value)


@pytest.mark.parametrize("old, read_as", [(None, None), ("llguidance", "llguidance")])
def test_a_manifest_written_with_the_old_key_still_reads(old, read_as):
    from trtpipe.config import BuildConfig

    dumped = load_config("tinyllama-pytorch").model_dump(mode="json")
    dumped["llm_api"]["guided_decoding_backend"] = old  # what a manifest written before the move holds
    del dumped["serving"]["guided_decoding"]
    assert BuildConfig.model_validate(dumped).serving.guided_decoding == read_as
