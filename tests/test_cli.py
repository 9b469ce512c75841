"""The tvm-sparse command line, run as a user runs it."""

import os
import subprocess
import sys

from tvm_sparse.cli import build_parser


def _cli(*arguments, timeout=600):
    return subprocess.run([sys.executable, "-m", "tvm_sparse.cli", *arguments], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "120"}, check=False)


def test_help_lists_the_commands():
    result = _cli("--help")
    assert result.returncode == 0
    for command in ("demo", "phone-emulator"):
        assert command in result.stdout


def test_every_command_has_help():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # pylint: disable=protected-access
    for name in commands:
        result = _cli(name, "--help")
        assert result.returncode == 0, (name, result.stderr)
        assert "usage: tvm-sparse " + name in result.stdout


def test_demo_checks_and_times_resnet18():
    result = _cli("demo", "--rounds", "1")
    assert result.returncode == 0, result.stderr
    assert "max |TVM - PyTorch|" in result.stdout
    assert "tvm_sparse" in result.stdout and "PyTorch" in result.stdout


def test_phone_emulator_rejects_a_bad_tracker_address():
    result = _cli("phone-emulator", "--tracker", "localhost")
    assert result.returncode == 1
    assert "HOST:PORT" in result.stderr
