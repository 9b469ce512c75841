"""Image classification data: scikit-learn's shipped digits, Fashion-MNIST from Debian's package, and CIFAR-10 from a folder.

All return :class:`ImageData` with numpy arrays (``float32`` images ``[N, C, H, W]``, normalised
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


#: Where Debian's ``dataset-fashion-mnist`` (``scripts/install-fashion-mnist.sh``) puts the IDX files.
FASHION_MNIST_FOLDER = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
                       "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


def _read_idx(path):
    """An IDX file (``.gz`` or not) as a numpy array: the format of (Fashion-)MNIST."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path} cannot be read: {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes")
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path}: the header says {shape} but the file holds {data.size} values (truncated?)")
    return data.reshape(shape)


def load_fashion_mnist(folder=FASHION_MNIST_FOLDER, size=28, train_limit=None):
    """Fashion-MNIST (60,000 + 10,000 28x28 grey images, 10 classes) from its IDX files (no download).

    Parameters
    ----------
    folder : str or path
        The folder of the four IDX files (``train-images-idx3-ubyte[.gz]``, ...); by default
        where ``scripts/install-fashion-mnist.sh`` installs them.
    size : int
        Image side: 28, or larger to pad with zeros around (32 for CIFAR-shaped networks).
    train_limit : int, optional
        Keep only the first ``train_limit`` training images (quick runs).

    Raises
    ------
    DataError
        If a file is missing (naming the install script) or not an IDX file.
    """
    folder = Path(folder).expanduser()
    if size < 28:
        raise DataError(f"Fashion-MNIST size must be at least 28, got {size}")
    arrays = {}
    for key, name in FASHION_MNIST_FILES.items():
        candidates = [folder / f"{name}.gz", folder / name]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise DataError(f"Fashion-MNIST: no {name}[.gz] in {folder}; install it with "
                            "`sudo bash scripts/install-fashion-mnist.sh` or pass the folder of its IDX files")
        arrays[key] = _read_idx(path)
    if train_limit is not None:
        arrays["x_train"], arrays["y_train"] = arrays["x_train"][:train_limit], arrays["y_train"][:train_limit]
    pad = (size - 28) // 2

    def images(x):
        x = x[:, None].astype(np.float32) / 255.0
        return np.pad(x, ((0, 0), (0, 0), (pad, size - 28 - pad), (pad, size - 28 - pad)))

    x_train, x_test = _normalised(images(arrays["x_train"]), images(arrays["x_test"]))
    return ImageData(x_train, arrays["y_train"].astype(np.int64), x_test, arrays["y_test"].astype(np.int64),
                     num_classes=10, name="fashion-mnist")
