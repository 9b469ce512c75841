"""Digits (shipped with scikit-learn) and the CIFAR-10 folder loader, on a fake folder in the real format."""

import pickle

import numpy as np
import pytest

from tvm_sparse.data import CIFAR10_TEST_BATCH, CIFAR10_TRAIN_BATCHES, DataError, load_cifar10, load_digits


def test_digits_shapes_split_and_normalisation():
    data = load_digits(size=16, seed=0)
    assert data.x_train.shape[1:] == (1, 16, 16) and data.x_train.dtype == np.float32
    assert len(data.x_train) + len(data.x_test) == 1797
    assert len(data.x_test) == 360
    assert set(np.unique(data.y_test)) == set(range(10))
    assert abs(data.x_train.mean()) < 1e-4 and abs(data.x_train.std() - 1) < 1e-3
    # Upsampling repeats each 8x8 pixel in a 2x2 block.
    assert np.array_equal(data.x_train[:, :, ::2, ::2], data.x_train[:, :, 1::2, 1::2])
    assert np.array_equal(load_digits(size=16, seed=0).y_train, data.y_train)
    with pytest.raises(DataError, match="multiple of 8"):
        load_digits(size=12)


def _write_batch(path, images, labels):
    with open(path, "wb") as handle:
        pickle.dump({b"batch_label": b"fake", b"data": images, b"labels": list(labels), b"filenames": []}, handle)


@pytest.fixture
def cifar_folder(tmp_path):
    """A CIFAR-10 python folder with 4 images per training batch and 3 test images."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {}
    for name in CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH,):
        n = 3 if name == CIFAR10_TEST_BATCH else 4
        images = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n)
        _write_batch(folder / name, images, labels)
        batches[name] = (images, labels)
    return folder, batches


def test_cifar10_loads_the_batches_in_order(cifar_folder):
    folder, batches = cifar_folder
    for given in (folder, folder.parent):  # the batches folder or the folder that holds it
        data = load_cifar10(given)
        assert data.x_train.shape == (20, 3, 32, 32) and data.x_test.shape == (3, 3, 32, 32)
        expected_labels = np.concatenate([batches[name][1] for name in CIFAR10_TRAIN_BATCHES])
        assert np.array_equal(data.y_train, expected_labels)
        assert np.array_equal(data.y_test, batches[CIFAR10_TEST_BATCH][1])
    # Rows are channel-major 32x32 planes (red, green, blue); normalisation keeps the pixel order.
    raw = batches["data_batch_1"][0][1].reshape(3, 32, 32).astype(np.float32)
    loaded = data.x_train[1]
    for channel in range(3):
        assert np.corrcoef(raw[channel].ravel(), loaded[channel].ravel())[0, 1] > 0.9999
    assert load_cifar10(folder, train_limit=6).x_train.shape[0] == 6


def test_cifar10_errors_name_the_problem(cifar_folder, tmp_path):
    folder, _ = cifar_folder
    with pytest.raises(DataError, match="does not exist"):
        load_cifar10(tmp_path / "nowhere")
    (folder / "data_batch_3").unlink()
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="missing data_batch_3, test_batch"):
        load_cifar10(folder)
    (folder / "test_batch").write_bytes(b"not a pickle")
    _write_batch(folder / "data_batch_3", np.zeros((2, 3072), dtype=np.uint8), [0, 1])
    with pytest.raises(DataError, match="test_batch is not a CIFAR-10 python batch"):
        load_cifar10(folder)
    _write_batch(folder / "test_batch", np.zeros((2, 100), dtype=np.uint8), [0, 1])
    with pytest.raises(DataError, match=r"expected uint8 data \[N, 3072\]"):
        load_cifar10(folder)
    _write_batch(folder / "test_batch", np.zeros((2, 3072), dtype=np.uint8), [0, 12])
    with pytest.raises(DataError, match="labels must be 0..9"):
        load_cifar10(folder)


def _write_idx(path, array):
    import gzip

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fashion_folder(tmp_path):
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (30, 28, 28)))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 30))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (10, 28, 28)))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 10))
    return tmp_path


def test_fashion_mnist_reads_idx_files_and_pads(fashion_folder):
    from tvm_sparse.data import load_fashion_mnist

    data = load_fashion_mnist(fashion_folder, size=32, train_limit=20)
    assert data.x_train.shape == (20, 1, 32, 32) and data.x_test.shape == (10, 1, 32, 32)
    assert data.y_train.dtype == np.int64 and data.num_classes == 10
    assert abs(float(data.x_train.mean())) < 1e-5
    border = load_fashion_mnist(fashion_folder, size=32).x_test[:, :, :2]
    assert np.allclose(border, border.flat[0]), "the padding is one constant (zero before normalising)"


def test_fashion_mnist_errors_name_the_problem(fashion_folder, tmp_path_factory):
    from tvm_sparse.data import load_fashion_mnist

    with pytest.raises(DataError, match="install-fashion-mnist.sh"):
        load_fashion_mnist(tmp_path_factory.mktemp("empty"))
    raw = (fashion_folder / "t10k-labels-idx1-ubyte.gz")
    import gzip

    with gzip.open(raw, "rb") as handle:
        content = handle.read()
    with gzip.open(raw, "wb") as handle:
        handle.write(content[:-3])
    with pytest.raises(DataError, match="truncated"):
        load_fashion_mnist(fashion_folder)


def test_the_installed_fashion_mnist():
    from tests.conftest import require
    from tvm_sparse.data import FASHION_MNIST_FOLDER, load_fashion_mnist

    try:
        data = load_fashion_mnist(train_limit=1000)
    except DataError:
        require(f"Fashion-MNIST in {FASHION_MNIST_FOLDER}")
    assert data.x_train.shape == (1000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert sorted(set(data.y_test.tolist())) == list(range(10))
