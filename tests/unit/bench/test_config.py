import math

import pytest

from trtpipe.bench.config import (BenchConfig, Slo, parse_duration, parse_int_list, parse_rate_list, parse_slo,
                                  redact_url)
from trtpipe.bench.errors import BenchConfigError


def test_slo_parses_units_and_treats_bare_numbers_as_milliseconds():
    assert parse_slo("ttft=200ms,itl=50ms,e2e=5s") == Slo(ttft_s=0.2, itl_s=0.05, e2e_s=5.0)
    assert parse_slo("ttft:150,e2el=1.5s") == Slo(ttft_s=0.15, e2e_s=1.5)
    assert parse_duration("250us") == pytest.approx(250e-6)


def test_slo_with_an_unknown_key_names_the_allowed_keys():
    with pytest.raises(ValueError, match="ttft, tpot, itl, e2e"):
        parse_slo("latency=5s")


def test_sweep_lists_parse_and_rate_accepts_inf():
    assert parse_int_list("1, 4,16") == (1, 4, 16)
    assert math.isinf(parse_rate_list("2,inf")[1])
    with pytest.raises(ValueError, match="integers"):
        parse_int_list("1,four")


def test_default_sweep_is_closed_loop_1_4_16_64():
    assert [p.label for p in BenchConfig().sweep_points] == ["c=1", "c=4", "c=16", "c=64"]
    assert [p.label for p in BenchConfig(request_rates=(2.0, math.inf)).sweep_points] == ["rate=2", "rate=inf"]


def test_concurrency_and_request_rate_together_are_refused():
    with pytest.raises(BenchConfigError, match="not both"):
        BenchConfig(concurrencies=(4,), request_rates=(2.0,))


@pytest.mark.parametrize("kwargs", [{"num_prompts": 0}, {"concurrencies": (0,)}, {"url": "localhost:9000"},
                                    {"duration_s": -1.0}])
def test_invalid_values_are_refused_with_the_option_name(kwargs):
    with pytest.raises(BenchConfigError) as info:
        BenchConfig(**kwargs)
    assert info.value.exit_code == 2


def test_config_json_has_no_api_key_and_no_url_credentials():
    config = BenchConfig(url="http://user:hunter2@example.com/v1", api_key="sk-secret")
    text = str(config.to_json()) + repr(config)
    assert "sk-secret" not in text and "hunter2" not in text
    assert config.to_json()["has_api_key"] is True
    assert redact_url("https://a:b@host:1/v1") == "https://host:1/v1"
