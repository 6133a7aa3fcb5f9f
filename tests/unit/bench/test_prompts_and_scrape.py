import pytest

from trtpipe.bench.errors import BenchError
from trtpipe.bench.prompts import TokenCounter, make_prompts
from trtpipe.bench.scrape import key_metrics, parse_prometheus_text


def test_word_prompts_have_the_requested_length_and_a_shared_prefix():
    prompts = make_prompts(5, 32, TokenCounter(), seed=3, point_index=0, shared_prefix_len=16)
    assert all(p.num_tokens == 48 for p in prompts)
    prefixes = {" ".join(p.text.split()[:16]) for p in prompts}
    assert len(prefixes) == 1
    assert len({p.text for p in prompts}) == 5


def test_prompts_are_seeded_and_differ_between_sweep_points():
    counter = TokenCounter()
    first = make_prompts(3, 8, counter, seed=1, point_index=0)
    assert first == make_prompts(3, 8, counter, seed=1, point_index=0)
    assert first != make_prompts(3, 8, counter, seed=1, point_index=1)


def test_tokenizer_aware_prompts_are_sized_in_tokens(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    # A character-level tokenizer makes one word cost several tokens, unlike the word approximation.
    vocab = {ch: i for i, ch in enumerate(["[UNK]", *"abcdefghijklmnopqrstuvwxyz "])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer.decoder = decoders.Fuse()
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))

    counter = TokenCounter(str(path))
    assert counter.is_exact and "tokenizer-aware" in counter.describe()
    prompts = make_prompts(3, 40, counter, seed=0, point_index=0)
    assert all(abs(p.num_tokens - 40) <= 2 for p in prompts)
    assert all(len(p.text.split()) < 40 for p in prompts)


def test_a_missing_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(BenchError, match="tokenizer file not found"):
        TokenCounter(str(tmp_path / "nope.json"))


def test_prometheus_parser_keeps_gauges_and_counters_only():
    text = "\n".join([
        "# TYPE vllm:num_requests_waiting gauge",
        'vllm:num_requests_waiting{model_name="m"} 3',
        "# TYPE vllm:num_preemptions counter",
        'vllm:num_preemptions_total{model_name="m"} 7',
        'vllm:num_preemptions_created{model_name="m"} 1.7e9',
        "# TYPE vllm:time_to_first_token_seconds histogram",
        'vllm:time_to_first_token_seconds_bucket{le="0.1"} 4',
        "vllm:time_to_first_token_seconds_sum 0.3",
        "process_resident_memory_bytes 1e8",
        "untyped_thing 2 1700000000000",
        "garbage line",
    ])
    samples = parse_prometheus_text(text)
    assert samples == {'vllm:num_requests_waiting{model_name="m"}': 3.0,
                       'vllm:num_preemptions_total{model_name="m"}': 7.0, "untyped_thing": 2.0}
    assert set(key_metrics(samples)) == {'vllm:num_requests_waiting{model_name="m"}',
                                         'vllm:num_preemptions_total{model_name="m"}'}
