"""Data sets, held in memory as unsigned integers, and plain-torch augmentation.

Samples keep their integer pixel values (``x``: uint8, ``input_bits`` wide) so
the compiler's golden model sees exactly the integers the hardware sees; the
network's input is ``x * input_scale``.

Readers: scikit-learn's bundled 8x8 digits (the embedded default, fixed seeded
split), MNIST and Fashion-MNIST IDX files (gzipped or raw), CIFAR-10 binary
batches, and synthetic classification and pose sets.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .catalog import DATASETS

__all__ = ["DATASETS", "DataError", "Dataset", "augment", "first_train", "load_dataset", "read_idx"]

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2


class DataError(ValueError):
    """A data set could not be read; the message names the file and what was wrong."""


@dataclass(frozen=True)
class Dataset:
    """A data set in memory.

    ``task`` is ``classification`` (``y``: int64 class index) or ``pose``
    (``y``: float32 joint coordinates ``(J, 2)`` as (row, col) pixels, and
    ``head_size`` per sample for PCKh).
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    input_bits: int
    input_scale: float
    num_outputs: int
    task: str = "classification"
    head_train: Tensor | None = None
    head_test: Tensor | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


# --------------------------------------------------------------------------- IDX / CIFAR


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped when it starts with the gzip magic)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"{path}: truncated or oversized IDX file ({len(raw)} bytes, expected {expected} "
            f"for shape {shape})"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise DataError(f"{directory}: missing {stem}[.gz]; point --data-dir at the folder holding it")


def _load_idx_set(name: str, directory: Path) -> Dataset:
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find(directory, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find(directory, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{directory}: {prefix} images {images.shape} and labels {labels.shape} do not match"
            )
        labels_path = _find(directory, f"{prefix}-labels-idx1-ubyte")
        _check_labels(labels, 10, labels_path, f"{name} has classes 0..9")
        parts[split] = (torch.from_numpy(images.copy()).unsqueeze(1),
                        torch.from_numpy(labels.astype(np.int64)))
    return Dataset(name, *parts["train"], *parts["test"], input_bits=8, input_scale=1 / 255,
                   num_outputs=10)


def _load_cifar10(directory: Path) -> Dataset:
    record = 1 + 3 * 32 * 32

    def read(names: list[str]) -> tuple[Tensor, Tensor]:
        xs, ys = [], []
        for stem in names:
            path = directory / stem
            if not path.is_file():
                raise DataError(f"{directory}: missing {stem}; expected the CIFAR-10 binary version")
            raw = np.fromfile(path, dtype=np.uint8)
            if raw.size == 0 or raw.size % record:
                raise DataError(f"{path}: truncated CIFAR-10 batch ({raw.size} bytes is not a "
                                f"multiple of {record})")
            raw = raw.reshape(-1, record)
            if raw[:, 0].max() > 9:
                raise DataError(f"{path}: label {raw[:, 0].max()} out of range; not a CIFAR-10 batch")
            ys.append(torch.from_numpy(raw[:, 0].astype(np.int64)))
            xs.append(torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).copy()))
        return torch.cat(xs), torch.cat(ys)

    train = read([f"data_batch_{i}.bin" for i in range(1, 6)])
    test = read(["test_batch.bin"])
    return Dataset("cifar10", *train, *test, input_bits=8, input_scale=1 / 255, num_outputs=10)


def _load_npz_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path.parent}: missing {path.name}; an npz data set is train.npz and "
                        "test.npz, each with arrays x (N, H, W) or (N, C, H, W) and y (N,)")
    hint = "write it with np.savez(path, x=images, y=labels)"
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if magic != b"PK\x03\x04":  # an .npz is a zip archive of .npy files
        raise DataError(f"{path}: not an .npz archive (it starts with {magic!r}, not a zip "
                        f"header); {hint}")
    try:
        with np.load(path, allow_pickle=False) as f:
            if not isinstance(f, np.lib.npyio.NpzFile):
                raise DataError(f"{path}: not an .npz archive; {hint}")
            if "x" not in f or "y" not in f:
                raise DataError(f"{path}: needs arrays 'x' and 'y', found {sorted(f.files)}")
            x, y = f["x"], f["y"]
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):  # an object array: never unpickled
            raise DataError(f"{path}: x or y is an array of Python objects, which bitfold does "
                            f"not unpickle; store numbers (uint8 x, integer y); {hint}") from None
        raise DataError(f"{path}: truncated or corrupted .npz ({exc}); {hint}") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupted .npz ({exc or type(exc).__name__}); "
                        f"{hint}") from None
    if x.dtype.kind != "u" or x.dtype.itemsize > 1:
        raise DataError(f"{path}: x is {x.dtype}; store pixels as uint8 (quantize the images "
                        "to at most 8 bits)")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
        raise DataError(f"{path}: x {x.shape} and y {y.shape} do not match; expected x (N, H, W) "
                        "or (N, C, H, W) and y (N,)")
    if y.dtype.kind not in "iu":
        raise DataError(f"{path}: y must hold class indices 0, 1, ... (found {y.dtype})")
    return x, y.astype(np.int64)


def _check_labels(labels: np.ndarray, classes: int, path: Path, why: str) -> None:
    """Every label a class index in ``0 .. classes - 1``, checked before any training."""
    if labels.size == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        bad = low if low < 0 else high
        raise DataError(f"{path}: label {bad} is out of range ({why}); fix the labels or "
                        "point --data-dir at the right files")


def _npz_classes(y: np.ndarray, path: Path) -> int:
    """The number of classes of an npz set: its training labels must be exactly 0 .. K-1."""
    low, high = int(y.min()), int(y.max())
    if low < 0:
        raise DataError(f"{path}: label {low} is negative; labels are class indices 0, 1, ...")
    present = np.unique(y)  # sorted; no allocation of size max(y)
    if len(present) != high + 1:
        missing = np.setdiff1d(np.arange(min(high + 1, len(present) + 10)), present)[:5]
        raise DataError(
            f"{path}: labels must be the class indices 0..K-1, each present in train.npz; found "
            f"{len(present)} distinct labels from {low} to {high} (first missing: "
            f"{', '.join(map(str, missing))}); renumber them, e.g. "
            "np.unique(y, return_inverse=True)[1] over train and test together")
    return high + 1


def _load_npz_set(directory: Path) -> Dataset:
    """Your own images: ``train.npz`` and ``test.npz`` with uint8 ``x`` and class indices ``y``.

    The input width is the fewest bits that hold the largest pixel value.
    """
    x_train, y_train = _load_npz_split(directory / "train.npz")
    x_test, y_test = _load_npz_split(directory / "test.npz")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{directory}: train frames {x_train.shape[1:]} and test frames "
                        f"{x_test.shape[1:]} differ in shape")
    top = int(max(x_train.max(), x_test.max(), 1))
    bits = top.bit_length()
    classes = _npz_classes(y_train, directory / "train.npz")
    _check_labels(y_test, classes, directory / "test.npz",
                  f"train.npz has classes 0..{classes - 1}")
    return Dataset("npz", torch.from_numpy(x_train.copy()), torch.from_numpy(y_train),
                   torch.from_numpy(x_test.copy()), torch.from_numpy(y_test), input_bits=bits,
                   input_scale=1 / (2 ** bits - 1), num_outputs=classes)


# --------------------------------------------------------------------------- embedded / synthetic


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.images.astype(np.uint8)[:, None]  # values 0..16
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, bunch.target, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED,
        stratify=bunch.target,
    )
    t = torch.from_numpy
    return Dataset("digits", t(x_tr), t(y_tr.astype(np.int64)), t(x_te), t(y_te.astype(np.int64)),
                   input_bits=5, input_scale=1 / 16, num_outputs=10)


def _synthetic(n_train: int = 2000, n_test: int = 500, shape=(1, 8, 8), classes: int = 10,
               seed: int = 0) -> Dataset:
    """Noisy copies of one random 8-bit prototype per class: learnable, tiny, no files."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randint(0, 256, (classes, *shape), generator=g).float()

    def draw(n: int) -> tuple[Tensor, Tensor]:
        y = torch.randint(0, classes, (n,), generator=g)
        x = protos[y] + 60 * torch.randn((n, *shape), generator=g)
        return x.clamp(0, 255).round().to(torch.uint8), y

    return Dataset("synthetic", *draw(n_train), *draw(n_test), input_bits=8, input_scale=1 / 255,
                   num_outputs=classes)


def _synthetic_pose(n_train: int = 512, n_test: int = 128, size: int = 64, joints: int = 4,
                    seed: int = 0) -> Dataset:
    """Images with one bright blob per joint, each joint with its own colour code."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]])[:joints]
    rows = torch.arange(size).view(-1, 1).float()
    cols = torch.arange(size).view(1, -1).float()

    def draw(n: int) -> tuple[Tensor, Tensor, Tensor]:
        pts = 8 + torch.rand((n, joints, 2), generator=g) * (size - 16)
        img = torch.zeros((n, 3, size, size))
        for j in range(joints):
            d2 = (rows - pts[:, j, 0].view(-1, 1, 1)) ** 2 + (cols - pts[:, j, 1].view(-1, 1, 1)) ** 2
            blob = torch.exp(-d2 / 8.0)
            img += codes[j].view(1, 3, 1, 1) * blob.unsqueeze(1)
        img = (img.clamp(0, 1) * 255 + 20 * torch.rand(img.shape, generator=g)).clamp(0, 255)
        head = (pts[:, 0] - pts[:, 1]).norm(dim=1).clamp(min=4.0)
        return img.round().to(torch.uint8), pts, head

    x_tr, y_tr, h_tr = draw(n_train)
    x_te, y_te, h_te = draw(n_test)
    return Dataset("synthetic-pose", x_tr, y_tr, x_te, y_te, input_bits=8, input_scale=1 / 255,
                   num_outputs=joints, task="pose", head_train=h_tr, head_test=h_te)


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    """Load data set ``name``; file-based sets read from ``data_dir``."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "digits":
        return _load_digits()
    if name == "synthetic":
        return _synthetic()
    if name == "synthetic-pose":
        return _synthetic_pose()
    if data_dir is None:
        raise DataError(f"dataset {name!r} is read from files: pass --data-dir DIR")
    directory = Path(data_dir)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory; pass the folder holding the {name} files")
    if name == "cifar10":
        return _load_cifar10(directory)
    if name == "npz":
        return _load_npz_set(directory)
    return _load_idx_set(name, directory)


def first_train(data: Dataset, n: int | None) -> Dataset:
    """``data`` with only its first ``n`` training samples (all of them for None); the test
    set is untouched. ``n`` larger than the training set is a :class:`DataError`."""
    if n is None:
        return data
    have = len(data.x_train)
    if n > have:
        raise DataError(f"--train-subset {n}: {data.name} has only {have} training samples; "
                        f"give at most {have}")
    head = None if data.head_train is None else data.head_train[:n]
    return dataclasses.replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n],
                               head_train=head)


def augment(x: Tensor, generator: torch.Generator, shift: int = 2, flip: bool = False) -> Tensor:
    """Random translation by up to ``shift`` pixels (zero fill) and optional horizontal flip."""
    n, _, h, w = x.shape
    if shift:
        padded = torch.nn.functional.pad(x, (shift,) * 4)
        dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
        rows = (dy.view(-1, 1) + torch.arange(h).view(1, -1))  # (n, h)
        cols = (dx.view(-1, 1) + torch.arange(w).view(1, -1))  # (n, w)
        idx_n = torch.arange(n).view(-1, 1, 1)
        x = padded.permute(0, 2, 3, 1)[idx_n, rows.view(n, h, 1), cols.view(n, 1, w)].permute(0, 3, 1, 2)
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5
        x = torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)
    return x.contiguous()
