"""Image classification data: scikit-learn's shipped digits, and CIFAR-10 from a folder the user gives.

Both return :class:`ImageData` with numpy arrays (``float32`` images ``[N, C, H, W]``, normalised
per channel with the training set's statistics, and ``int64`` labels), so that this module needs
neither torch nor a network connection.
"""

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"


class DataError(ValueError):
    """A data folder or file is missing or not in the expected format."""


@dataclass(frozen=True)
class ImageData:
    """A train/test split of labelled images.

    Attributes
    ----------
    x_train, x_test : numpy.ndarray
        ``float32`` ``[N, C, H, W]``.
    y_train, y_test : numpy.ndarray
        ``int64`` ``[N]`` class ids.
    num_classes : int
    name : str
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str

    @property
    def image_shape(self):
        """``(C, H, W)``."""
        return self.x_train.shape[1:]


def _normalised(x_train, x_test):
    mean = x_train.mean(axis=(0, 2, 3), keepdims=True)
    std = x_train.std(axis=(0, 2, 3), keepdims=True) + 1e-6
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def load_digits(size=16, test_fraction=0.2, seed=0):
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), upsampled to ``size`` x ``size``.

    Parameters
    ----------
    size : int
        Image side: a multiple of 8 (each pixel repeated ``size // 8`` times per axis).
    test_fraction : float
        Share of the images held out, stratified by class.
    seed : int
        Seed of the split.
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    if size % 8 or size < 8:
        raise DataError(f"digits size must be a positive multiple of 8, got {size}")
    bunch = sklearn_digits()
    factor = size // 8
    images = np.kron(bunch.images, np.ones((factor, factor)))[:, None].astype(np.float32) / 16.0
    labels = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    x_train, x_test = _normalised(x_train, x_test)
    return ImageData(x_train, y_train, x_test, y_test, num_classes=10, name="digits")


def _read_cifar_batch(path):
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise DataError(f"{path} is not a CIFAR-10 python batch (pickle): {err}") from err
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path} is not a CIFAR-10 python batch: expected a dict with b'data' and b'labels'")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(
            f"{path}: expected uint8 data [N, 3072] and N labels, got {data.dtype} {data.shape} and {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels must be 0..9, got {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(folder, train_limit=None):
    """CIFAR-10 from the standard python-pickle batches in ``folder`` (no download).

    Parameters
    ----------
    folder : str or path
        The ``cifar-10-batches-py`` folder (``data_batch_1`` .. ``data_batch_5``, ``test_batch``),
        or a folder that contains it.
    train_limit : int, optional
        Keep only the first ``train_limit`` training images (quick runs).

    Raises
    ------
    DataError
        If the folder does not exist, lacks a batch file (all missing ones are named), or a file
        is not a CIFAR-10 batch.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"CIFAR-10 folder {folder} does not exist or is not a directory")
    if not (folder / CIFAR10_TEST_BATCH).exists() and (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    missing = [name for name in CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH,) if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"{folder} is not a CIFAR-10 python folder: missing {', '.join(missing)} "
            "(expected the extracted cifar-10-python.tar.gz: data_batch_1..5 and test_batch)"
        )
    train = [_read_cifar_batch(folder / name) for name in CIFAR10_TRAIN_BATCHES]
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    x_test, y_test = _read_cifar_batch(folder / CIFAR10_TEST_BATCH)
    if train_limit is not None:
        x_train, y_train = x_train[:train_limit], y_train[:train_limit]
    x_train, x_test = _normalised(x_train.astype(np.float32) / 255.0, x_test.astype(np.float32) / 255.0)
    return ImageData(x_train, y_train, x_test, y_test, num_classes=10, name="cifar10")
