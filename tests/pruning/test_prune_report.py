"""The ``prune-report`` command: a clear error for a wrong CIFAR-10 folder; a tiny full run (slow)."""

import pickle

import numpy as np
import pytest

from tvm_sparse.cli import main
from tvm_sparse.data import CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES


def test_wrong_cifar_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["prune-report", "--cifar10", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "not a CIFAR-10 python folder: missing data_batch_1" in out.replace("\n", "")


@pytest.mark.slow
def test_tiny_report_on_digits_and_a_fake_cifar_folder(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name in CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH,):
        batch = {b"data": rng.integers(0, 256, (16, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 16))}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    argv = ["prune-report", "--cifar10", str(tmp_path), "--epochs", "2", "--finetune-epochs", "1",
            "--admm-epochs", "1", "--repeats", "1", "--skip-schemes"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for title in ("digits: cost of pruning", "cifar10: cost of pruning"):
        assert title in out
    assert out.count("ClickTrain time / dense training") == 2
    assert "8.01x" in out  # measured compression of the pattern-pruned 3x3 convolutions


@pytest.mark.slow
def test_tiny_report_on_fashion_mnist(capsys):
    from tests.conftest import require
    from tvm_sparse.data import FASHION_MNIST_FOLDER, DataError, load_fashion_mnist

    try:
        load_fashion_mnist(train_limit=1)
    except DataError:
        require(f"Fashion-MNIST in {FASHION_MNIST_FOLDER}")
    argv = ["prune-report", "--fashion-mnist", "--train-limit", "256", "--epochs", "1", "--finetune-epochs", "1",
            "--admm-epochs", "1", "--repeats", "1", "--skip-schemes", "--network", "small-resnet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "fashion-mnist: cost of pruning" in out and out.startswith("SmallResNet;")


@pytest.mark.parametrize("network, expected", [("small-cnn", {"fc1.weight"}),
                                               ("small-resnet", {"stages.1.shortcut.0.weight", "stages.2.shortcut.0.weight",
                                                                 "stages.3.shortcut.0.weight"})])
def test_the_bsr_row_prunes_the_1x1_and_hidden_linear_layers_of_either_network(network, expected):
    import importlib

    from tvm_sparse.commands.prune_report import NETWORKS, scheme_configs

    module, name = NETWORKS[network]
    model = getattr(importlib.import_module(module), name)()
    configs = scheme_configs(model, 8)
    assert set(configs["BSR 4x4 (1x1 convs, hidden linear)"]) == expected
    assert all(name.endswith(".weight") for config in configs.values() for name in config)
