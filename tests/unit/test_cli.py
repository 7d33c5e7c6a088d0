"""The CLI's shape: one module per command, lazy imports, quiet exits on a closed pipe and Ctrl-C."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from slmkit.cli.main import COMMANDS, build_parser

# A command whose run() writes far more than a pipe holds, or is interrupted.
DRIVER = """
import sys, types
from slmkit.cli import main as m
def run(args):
    if sys.argv[1] == "interrupt":
        raise KeyboardInterrupt
    for i in range(200000):
        print("line", i)
    return 0
fake = types.SimpleNamespace(arguments=lambda cmd: None, run=run)
m._module = lambda name: fake
sys.exit(m.main(["config"]))
"""


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_module_has_arguments_and_run(command: str) -> None:
    module = importlib.import_module(f"slmkit.cli.{COMMANDS[command][0]}")
    assert callable(module.arguments) and callable(module.run)


def test_the_parser_knows_every_command() -> None:
    help_text = build_parser().format_help()
    assert all(name in help_text for name in COMMANDS)
    args = build_parser("import").parse_args(["import", "m:1", "f.gguf", "--parameter", "temperature", "0"])
    assert args.parameter == [["temperature", "0"]]


def test_a_closed_pipe_ends_quietly() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, "print"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"line")
    proc.stdout.close()  # `| head -1`
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err


def test_ctrl_c_ends_quietly() -> None:
    result = subprocess.run([sys.executable, "-c", DRIVER, "interrupt"], capture_output=True, timeout=60)
    assert result.returncode == 130 and b"Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval"], "give a model"),
        (["eval", "m:1", "--max-ppl-increase", "0.05"], "--max-ppl-increase needs --compare"),
        (["eval", "--endpoint", "http://h:1", "--model", "m", "--reference", "r:1"], "local models only"),
    ],
)
def test_eval_argument_mistakes_are_named_before_any_work(argv: list[str], message: str) -> None:
    from slmkit.cli import eval as eval_command
    from slmkit.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match=message):
        eval_command.run(build_parser("eval").parse_args(argv))


def test_run_attaches_the_image_files_a_prompt_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import base64
    import sys

    from slmkit.cli.repl import message as _m

    def _message(text: str) -> dict[str, object]:
        return _m(text, sys.stderr)

    (tmp_path / "cat.png").write_bytes(b"\x89PNG fake")
    message = _message(f"what is in {tmp_path / 'cat.png'} and missing.png?")
    assert message["images"] == [base64.b64encode(b"\x89PNG fake").decode()]
    assert message["content"] == "what is in and missing.png?"  # a path that is no file stays text
    assert "Added image" in capsys.readouterr().err
    assert _message("no images here") == {"role": "user", "content": "no images here"}
