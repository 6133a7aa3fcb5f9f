"""`trtpipe plan`'s API Specification (generated from the frontend's code) and Performance Baseline (filled from a
`trtpipe bench run` report). The real bench run against a real Triton is tests/e2e/test_plan_baseline.py."""

from __future__ import annotations

from click.testing import CliRunner

from trtpipe import plan_api
from trtpipe.commands.plan import plan_command


def test_the_api_specification_lists_every_route_and_request_property_the_frontend_has(tmp_path):
    schema = plan_api.openapi_schema()
    routes = {(m, p.strip("`")) for m, p, _, _ in plan_api.routes(schema)}
    assert routes == {(m.upper(), p) for p, ms in schema["paths"].items() for m in ms}
    for path, model in plan_api.REQUEST_MODELS.items():
        listed = {n.strip("`") for route, _, names in plan_api.parameter_families(schema) if route == f"`{path}`"
                  for n in names.split(", ")}
        assert listed == set(schema["components"]["schemas"][model]["properties"]), path
    families = {family for _, family, _ in plan_api.parameter_families(schema)}
    assert {"structured outputs", "tools", "log-probs", "sampling", "streaming"} <= families
    result = CliRunner().invoke(plan_command, ["llama-8b", "--gpu", "h100-sxm-80gb", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = (tmp_path / "api-specification.md").read_text()
    for status in ("401", "404", "413", "429", "503", "504"):
        assert f"| {status} |" in doc, status
    assert "422" not in doc  # serve answers validation errors with 400
    assert "`response_format`" in doc and "`tool_choice`" in doc and "`top_logprobs`" in doc
    assert "<= 4194304 bytes (`--max-body-bytes`), then 413" in doc and "600 s (`--request-timeout`), then 504" in doc


def test_without_a_baseline_the_document_says_how_to_measure_it(tmp_path):
    CliRunner().invoke(plan_command, ["tiny-llama", "--gpu", "l40s-48gb", "--out", str(tmp_path)])
    doc = (tmp_path / "performance-baseline.md").read_text()
    assert "Placeholder" in doc and "--baseline BENCH_DIR" in doc
