"""The tvm-sparse command line, run as a user runs it."""

import os
import re
import signal

import pytest

from tests.commands.cli_process import run_cli
from tvm_sparse.cli import build_parser


def _whole_cells(output):
    """True when no table cell was cut short to fit the console."""
    return "\u2026" not in output


def test_help_lists_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("demo", "phone-emulator"):
        assert command in result.stdout


def test_every_command_has_help(capsys):
    # In this process (the same parser `tvm-sparse` builds): a process per command costs seconds each.
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # pylint: disable=protected-access
    for name in commands:
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args([name, "--help"])
        assert exited.value.code == 0, name
        assert "usage: tvm-sparse " + name in capsys.readouterr().out


def test_demo_checks_and_times_resnet18():
    # Unpruned, so that CI does not spend minutes compiling specialised kernels (the sparse
    # routing itself is tested in tests/relay_passes).
    result = run_cli("demo", "--compression", "0", "--rounds", "1")
    assert result.returncode == 0, result.stderr
    for row in ("tvm_sparse", "tvm_sparse, passes off", "PyTorch", "ONNX Runtime (dense model)"):
        assert row in result.stdout
    assert _whole_cells(result.stdout), result.stdout
    # Its long steps say what runs, also into a pipe (no spinner there): a log shows progress.
    before_tables = result.stdout.split("what the sparse passes decided")[0]
    for step in ("importing resnet18 into TVM", "compiling resnet18 for llvm (tvm_sparse) ..."):
        assert step in before_tables, result.stdout
    for step in ("exporting the dense model to ONNX Runtime: ", "timing, 1 interleaved rounds: "):
        assert step in result.stdout


def test_phone_emulator_rejects_a_bad_tracker_address():
    result = run_cli("phone-emulator", "--tracker", "localhost")
    assert result.returncode == 1
    assert "HOST:PORT" in result.stderr


def test_compile_prints_the_per_layer_report(tmp_path, program):
    library = tmp_path / "block.so"
    result = run_cli("compile", str(program), "--summary", "-o", str(library), "--min-macs", "0")
    assert result.returncode == 0, result.stderr
    assert library.exists()
    for expected in ("conv1.weight", "pattern_conv2d", "project.weight", "block_punched_conv2d"):
        assert expected in result.stdout
    assert _whole_cells(result.stdout), result.stdout


@pytest.mark.tuning
def test_tune_a_program_then_compile_it_with_the_logs(tmp_path, program):
    logs = tmp_path / "logs"
    result = run_cli("tune", str(program), "--trials", "2", "--sparse-trials", "1", "--threads", "1", "-o", str(logs))
    assert result.returncode == 0, result.stderr
    assert (logs / "COMMAND").read_text().startswith(f"tvm-sparse tune {program} ")
    applied = {}
    for folder in (logs, tmp_path / "no-logs"):
        result = run_cli("compile", str(program), "--tuning-logs", str(folder))
        assert result.returncode == 0, result.stderr
        found = re.search(rf"tuning logs {re.escape(str(folder))}: applied tuned schedules to (\d+) of (\d+) dense "
                          "functions", " ".join(result.stdout.split()))
        assert found, result.stdout
        applied[folder.name] = (int(found[1]), int(found[2]))
    functions = applied["logs"][1]
    assert functions >= 1 and applied == {"logs": (functions, functions), "no-logs": (0, functions)}


def test_a_program_is_tuned_into_a_folder_named_after_its_file():
    from tvm_sparse.commands.tune import default_log_dir
    from tvm_sparse.target import parse_target

    args = build_parser().parse_args(["tune", os.path.join("models", "my_net.pt2")])
    assert default_log_dir(args, parse_target("llvm")).split(os.sep)[-2] == "my_net"


@pytest.mark.parametrize("command", ["compile", "tune"])
def test_prune_refuses_a_program(tmp_path, program, command):
    result = run_cli(command, str(program), "--prune", "magnitude", "-o", str(tmp_path / "out"))
    assert result.returncode == 1 and "--prune works on built-in models" in result.stderr


@pytest.mark.parametrize("command", ["compile", "tune"])
def test_help_names_the_targets_of_real_phones(command):
    from tvm_sparse.commands.target_argument import PHONE_CPU_TARGETS, PHONE_GPU_TARGETS
    from tvm_sparse.target import parse_target

    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    for _, target in PHONE_CPU_TARGETS + PHONE_GPU_TARGETS:
        assert target in result.stdout
        parse_target(target)  # LLVM knows each CPU
    for example in ("-mcpu=cortex-a76", "-mcpu=cortex-a55", "-mcpu=cortex-x1", "opencl -device=mali",
                    "opencl -device=adreno"):
        assert example in result.stdout


def test_compile_prunes_3x3_layers_block_punched():
    result = run_cli("compile", "resnet18", "--prune", "magnitude", "--scheme-3x3", "block_punched", "--summary")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if ".conv" in line and "layer" in line]
    assert rows and all("block_punched_conv2d" in line for line in rows), "\n".join(rows)


@pytest.mark.parametrize("options, folder", [
    ([], "resnet18"),
    (["--prune", "magnitude"], "resnet18-pruned8x"),
    (["--prune", "magnitude", "--scheme-3x3", "block_punched", "--block", "8x8"], "resnet18-pruned8x-block_punched8x8"),
])
def test_tune_keeps_each_pruning_in_its_own_log_folder(options, folder):
    from tvm_sparse.commands.tune import default_log_dir
    from tvm_sparse.target import parse_target

    args = build_parser().parse_args(["tune", "resnet18", *options])
    assert default_log_dir(args, parse_target("llvm")).split(os.sep)[-2] == folder


def test_compile_names_a_bad_model_and_target():
    result = run_cli("compile", "resnet19")
    assert result.returncode == 1 and "'resnet19' is neither a built-in model" in result.stderr
    result = run_cli("compile", "resnet18", "--target", "llvm -mcpu=potato")
    assert result.returncode == 1 and "-mcpu=potato" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("scheme_3x3", ["pattern", "block_punched"])
def test_bench_model_times_every_runtime_and_checks_them(scheme_3x3):
    result = run_cli("bench", "model", "--threads", "1", "--rounds", "1", "--scheme-3x3", scheme_3x3, timeout=1800)
    assert result.returncode == 0, result.stderr
    for expected in ("tvm_sparse dense", "pytorch", "onnxruntime", "vs onnxruntime (target)", "routed to sparse kernels",
                     f"3x3 layers {scheme_3x3} at 8x", "ideal (FLOPs)", "of ideal"):
        assert expected in result.stdout
    assert _whole_cells(result.stdout), result.stdout


@pytest.mark.parametrize("block, message", [("8y4", "a block is BKxBC, e.g. 8x4; got '8y4'"),
                                            ("0x4", "block sides are positive, got '0x4'")])
def test_a_bad_block_shape_is_named(capsys, block, message):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--scheme-3x3", "block_punched", "--block", block])
    assert message in capsys.readouterr().err


def test_bench_kernels_runs_layers_at_other_densities(capsys):
    from tvm_sparse.bench.kernels import LAYERS, layer_named

    layer = layer_named("resnet18-cifar-512x4@0.5")
    assert (layer.name, layer.density) == ("resnet18-cifar-512x4@0.5", 0.5)
    assert (layer.channels, layer.size) == (LAYERS["resnet18-cifar-512x4"].channels, 4)
    assert layer_named("resnet18-cifar-512x4") is LAYERS["resnet18-cifar-512x4"]
    with pytest.raises(ValueError, match="unknown layer 'resnet18-cifar-9x9'"):
        layer_named("resnet18-cifar-9x9@0.5")
    with pytest.raises(ValueError, match=r"density must be in \(0, 1\]"):
        layer_named("resnet18-cifar-512x4@0")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "kernels", "--density", "1.5"])
    assert "a density is in (0, 1], got 1.5" in capsys.readouterr().err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda signum: signum.name)
def test_phone_emulator_turns_each_stop_signal_into_an_unwinding_exception(signum):
    from tvm_sparse.commands.phone_emulator import StopSignal, stop_signals_raised

    before = signal.getsignal(signum)
    with pytest.raises(StopSignal) as stopped:
        with stop_signals_raised():
            os.kill(os.getpid(), signum)
    assert stopped.value.signum == signum
    assert signal.getsignal(signum) is before


def test_compile_profiles_each_layer(program):
    result = run_cli("compile", str(program), "--profile", "--min-macs", "0")
    assert result.returncode == 0, result.stderr
    for expected in ("conv1.weight", "sparse_conv1_weight", "fc.weight", "other kernels", "outside kernels"):
        assert expected in result.stdout, result.stdout
