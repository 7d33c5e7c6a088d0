"""Errors a person meets at the terminal: one clear line naming the problem and the fix, the
command's own usage for its own mistakes, "did you mean" for typos; never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmkit.cli.main import main


def fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize("host", ["127.0.0.1:99999", "127.0.0.1:abc", "localhost:-1"])
def test_a_bad_port_is_one_line_naming_the_flag(host: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = fails(["serve", "--host", host], capsys)
    assert code == 1 and err.startswith("Error: --host: ") and "is not a port" in err and "API key" not in err


def test_there_is_no_port_flag_and_serve_says_what_to_use(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = fails(["serve", "--port", "8080"], capsys)
    assert code == 2 and "usage: slm serve" in err and "--host 127.0.0.1:8080" in err


def test_a_flag_typo_gets_the_commands_usage_and_the_nearest_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = fails(["serve", "--hots", "x"], capsys)
    assert code == 2 and "usage: slm serve" in err and "did you mean --host?" in err
    code, err = fails(["list", "--jsn"], capsys)
    assert code == 2 and "usage: slm list" in err and "did you mean --json?" in err


def test_a_command_typo_gets_the_nearest_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = fails(["srve"], capsys)
    assert code == 2 and "did you mean serve?" in err
    code, err = fails(["xyzzy"], capsys)
    assert code == 2 and "'xyzzy' is not a command" in err and "did you mean" not in err


def test_fit_of_an_unknown_name_says_where_it_looked(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("SLM_MODELS", str(tmp_path / "models"))
    code, err = fails(["fit", "qwen3-5b"], capsys)
    assert code == 1 and "neither in the catalog nor in the local store" in err and "qwen3-4b" in err
    assert "pulling" not in err


def test_bench_compare_of_missing_or_foreign_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, err = fails(["bench", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")], capsys)
    assert code == 1 and "a.json does not exist" in err
    (tmp_path / "x.json").write_text("{not json")
    (tmp_path / "y.json").write_text('{"other": 1}')
    code, err = fails(["bench", "compare", str(tmp_path / "x.json"), str(tmp_path / "y.json")], capsys)
    assert code == 1 and "x.json is not `slm bench` results.json" in err


def test_a_port_in_use_is_said_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = fails(["serve", "--host", f"127.0.0.1:{port}", "--no-preload"], capsys)
    assert code == 1 and f"127.0.0.1:{port} is in use by another program" in err
    assert "serving on" not in capsys.readouterr().out


def test_https_without_a_certificate_is_refused(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv("SLM_TLS_CERT", raising=False)
    code, err = fails(["serve", "--host", "https://127.0.0.1:0"], capsys)
    assert code == 1 and "--host asks for https but there is no certificate" in err and "--tls-cert" in err
    monkeypatch.setenv("SLM_HOST", "https://127.0.0.1:0")
    code, err = fails(["serve"], capsys)
    assert code == 1 and "SLM_HOST asks for https" in err


def test_an_https_address_is_called_with_https(monkeypatch: pytest.MonkeyPatch) -> None:
    from slmkit.config import Config

    monkeypatch.setenv("SLM_HOST", "https://models.example:8443")
    assert Config.from_env().base_url == "https://models.example:8443"
    monkeypatch.setenv("SLM_HOST", "models.example:8443")
    assert Config.from_env().base_url == "http://models.example:8443"


def test_a_suite_error_names_the_test_without_pydantics_prefix() -> None:
    from slmkit.errors import InvalidRequest
    from slmkit.optimize.evaluate import Suite, load_yaml_model

    with pytest.raises(InvalidRequest) as caught:
        load_yaml_model("tests:\n  - prompt: hi\n", Suite, "suite.yaml")
    assert str(caught.value) == (
        "suite.yaml: tests.0: each test needs contains, not_contains, regex or json_schema"
    )


def test_run_says_when_it_starts_a_background_server(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import subprocess

    from slmkit.cli import connect
    from slmkit.client import Client

    monkeypatch.setenv("SLM_MODELS", str(tmp_path / "models"))
    answers = iter([False, True])
    monkeypatch.setattr(Client, "health", lambda self: next(answers))

    class Started:
        pid = 4242

        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def poll(self) -> None:
            return None

    monkeypatch.setattr(subprocess, "Popen", Started)
    connect.ensure_server()
    err = capsys.readouterr().err
    assert "Started an slmkit server in the background" in err and "pid 4242" in err
    assert str(tmp_path / "server.log") in err and "kill 4242" in err
