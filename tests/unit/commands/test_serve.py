"""`trtpipe serve` options -> ServeOptions (CliRunner; nothing is started)."""

from __future__ import annotations

from click.testing import CliRunner

from trtpipe.commands import serve as command


def test_serve_options_reach_the_server(monkeypatch, tmp_path):
    got = {}
    monkeypatch.setattr("trtpipe.serve.process.server.serve", lambda opts, on_ready, on_starting: got.setdefault("opts", opts))
    keys = tmp_path / "keys"
    keys.write_text("from-file\n")
    template = tmp_path / "t.jinja"
    template.write_text("{{ messages }}")
    result = CliRunner().invoke(command.serve, [
        "--repo", str(tmp_path), "--port", "9100", "--triton", "10.0.0.1:8001", "--triton", "10.0.0.2:8001",
        "--api-key", "secret-1", "--api-key-file", str(keys), "--protect-metrics", "--chat-template", str(template),
        "--max-running", "8", "--max-waiting", "4", "--request-timeout", "30", "--keepalive", "5",
        "--drain-timeout", "12", "--max-body-bytes", "1000", "--engine-threads", "3"],
        env={"TRTPIPE_API_KEYS": "from-env"})
    assert result.exit_code == 0, result.output
    opts = got["opts"]
    assert opts.triton_urls == ("10.0.0.1:8001", "10.0.0.2:8001") and opts.port == 9100
    assert opts.api_keys == ("secret-1", "from-env", "from-file") and opts.protect_metrics
    assert "secret" not in repr(opts) and "secret" not in result.output  # keys are never printed
    assert opts.chat_template == "{{ messages }}"
    assert (opts.max_running, opts.max_waiting, opts.request_timeout_s, opts.keepalive_s, opts.drain_timeout_s,
            opts.max_body_bytes, opts.engine_threads) == (8, 4, 30.0, 5.0, 12.0, 1000, 3)


def test_engine_threads_must_be_positive(tmp_path):
    result = CliRunner().invoke(command.serve, ["--repo", str(tmp_path), "--engine-threads", "0"])
    assert result.exit_code == 2 and "--engine-threads" in result.output


def test_frontend_settings_follow_the_options(tmp_path):
    from trtpipe.serve.process.server import ServeOptions, frontend_settings

    opts = ServeOptions(repo=tmp_path, api_keys=("sk-very-secret",), request_timeout_s=9.0)
    settings = frontend_settings(opts, ("a:1", "b:2"))
    assert settings.replica_urls == ("a:1", "b:2") and settings.request_timeout_s == 9.0
    assert settings.api_keys == ("sk-very-secret",) and "sk-very-secret" not in repr(settings)


def test_api_servers_reach_the_server_and_default_to_one_per_four_cores(monkeypatch, tmp_path):
    from trtpipe.serve.process import server

    got = []
    monkeypatch.setattr("trtpipe.serve.process.server.serve", lambda opts, on_ready, on_starting: got.append(opts))
    assert CliRunner().invoke(command.serve, ["--repo", str(tmp_path), "--api-servers", "3"]).exit_code == 0
    monkeypatch.setattr(server, "usable_cpus", lambda: 16)
    assert CliRunner().invoke(command.serve, ["--repo", str(tmp_path)]).exit_code == 0
    assert [o.api_servers for o in got] == [3, 4]
    assert [server.default_api_servers(c) for c in (1, 2, 4, 7, 8, 16, 64)] == [1, 1, 1, 1, 2, 4, 4]
    result = CliRunner().invoke(command.serve, ["--repo", str(tmp_path), "--api-servers", "0"])
    assert result.exit_code == 2 and "--api-servers" in result.output


def test_an_api_key_on_the_command_line_warns_and_points_to_the_file_and_the_variable(monkeypatch, tmp_path):
    got = []
    monkeypatch.setattr("trtpipe.serve.process.server.serve", lambda opts, on_ready, on_starting: got.append(opts))
    result = CliRunner().invoke(command.serve, ["--repo", str(tmp_path), "--api-key", "sk-visible"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == (
        "warning: --api-key puts the key in the process list (ps) and in shell history; use --api-key-file FILE or "
        "$TRTPIPE_API_KEYS (comma-separated) instead. The key is accepted.")
    assert got[0].api_keys == ("sk-visible",) and "sk-visible" not in result.stderr + result.stdout


def test_keys_from_the_file_or_the_environment_give_no_warning(monkeypatch, tmp_path):
    monkeypatch.setattr("trtpipe.serve.process.server.serve", lambda opts, on_ready, on_starting: None)
    keys = tmp_path / "keys"
    keys.write_text("k1\n")
    result = CliRunner().invoke(command.serve, ["--repo", str(tmp_path), "--api-key-file", str(keys)],
                                                env={"TRTPIPE_API_KEYS": "k2"})
    assert result.exit_code == 0 and "warning" not in result.stderr


def test_supervision_options_reach_the_server_and_default_as_documented(monkeypatch, tmp_path):
    from trtpipe.serve.process.server import ServeOptions

    got = []
    monkeypatch.setattr("trtpipe.serve.process.server.serve", lambda opts, on_ready, on_starting: got.append(opts))
    runner = CliRunner()
    assert runner.invoke(command.serve, ["--repo", str(tmp_path)]).exit_code == 0
    assert runner.invoke(command.serve, ["--repo", str(tmp_path), "--health-timeout", "1.5", "--hang-timeout", "4",
                                         "--triton-max-failures", "2"]).exit_code == 0
    defaults = ServeOptions(repo=tmp_path)
    assert (got[0].health_timeout_s, got[0].hang_timeout_s, got[0].triton_max_failures) == (
        defaults.health_timeout_s, defaults.hang_timeout_s, defaults.triton_max_failures) == (10.0, 20.0, 5)
    assert (got[1].health_timeout_s, got[1].hang_timeout_s, got[1].triton_max_failures) == (1.5, 4.0, 2)
    result = runner.invoke(command.serve, ["--repo", str(tmp_path), "--triton-max-failures", "0"])
    assert result.exit_code == 2 and "--triton-max-failures" in result.output


def test_our_triton_logs_to_a_new_file_per_run_and_external_replicas_to_none(monkeypatch, tmp_path):
    got = []
    monkeypatch.setattr("trtpipe.serve.process.server.serve",
                        lambda opts, on_ready, on_starting: (got.append(opts), on_starting()))
    monkeypatch.setenv("TRTPIPE_HOME", str(tmp_path))
    result = CliRunner().invoke(command.serve, ["--repo", str(tmp_path)])
    assert got[0].triton_log.parent == tmp_path / "logs" and got[0].triton_log.name.startswith("tritonserver-")
    assert f"log {got[0].triton_log})" in result.stderr
    CliRunner().invoke(command.serve, ["--repo", str(tmp_path), "--triton", "10.0.0.1:8001"])
    assert got[1].triton_log is None


def test_allowed_origins_reach_the_frontend_settings(monkeypatch, tmp_path):
    from trtpipe.serve.process.server import frontend_settings

    got = {}
    monkeypatch.setattr("trtpipe.serve.process.server.serve",
                        lambda opts, on_ready, on_starting: got.setdefault("opts", opts))
    result = CliRunner().invoke(command.serve, ["--repo", str(tmp_path), "--triton", "10.0.0.1:8001",
                                                "--allowed-origin", "https://a.example",
                                                "--allowed-origin", "https://b.example"])
    assert result.exit_code == 0, result.output
    settings = frontend_settings(got["opts"], ("10.0.0.1:8001",))
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert frontend_settings(type(got["opts"])(repo=tmp_path), ("x:1",)).allowed_origins == ()
