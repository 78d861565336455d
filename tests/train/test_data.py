"""Data readers: the embedded digits, IDX and CIFAR-10 files, and their errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from bitfold.train.data import DataError, augment, load_dataset, read_idx


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder, n_train=6, n_test=4, gz=True):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = idx_bytes(rng.integers(0, 256, (n, 28, 28)))
        labels = idx_bytes(rng.integers(0, 10, (n,)))
        for stem, blob in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            if gz:
                (folder / f"{stem}.gz").write_bytes(gzip.compress(blob))
            else:
                (folder / stem).write_bytes(blob)


def test_digits_split_is_fixed_and_integer():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_train, b.y_train)
    assert a.x_train.dtype == torch.uint8 and a.input_shape == (1, 8, 8)
    assert len(a.x_train) + len(a.x_test) == 1797 and len(a.x_test) == 360
    assert int(a.x_train.max()) == 16 and a.input_bits == 5 and a.input_scale == 1 / 16
    assert sorted(a.y_test.unique().tolist()) == list(range(10))


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_gzipped_and_raw(tmp_path, gz):
    write_idx_set(tmp_path, gz=gz)
    data = load_dataset("mnist", tmp_path)
    assert data.x_train.shape == (6, 1, 28, 28) and data.x_test.shape == (4, 1, 28, 28)
    assert data.y_train.dtype == torch.int64


def test_real_mnist_files(mnist_dir):
    data = load_dataset("mnist", mnist_dir)
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert data.y_test.bincount().tolist()[:2] == [980, 1135]


def test_bad_magic_names_the_file(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(DataError, match=rf"^{path}: not an IDX file \(bad magic 504b0304\)$"):
        read_idx(path)


def test_truncated_file_names_the_file(tmp_path):
    write_idx_set(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=rf"^{path}: truncated or oversized IDX file"):
        load_dataset("mnist", tmp_path)


def test_truncated_gzip_names_the_file(tmp_path):
    write_idx_set(tmp_path, gz=True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(DataError, match=rf"^{path}: cannot read"):
        load_dataset("mnist", tmp_path)


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(DataError, match=r"missing train-images-idx3-ubyte\[\.gz\]; point --data-dir"):
        load_dataset("fashion-mnist", tmp_path)
    with pytest.raises(DataError, match=r": not a directory"):
        load_dataset("mnist", tmp_path / "nope")
    with pytest.raises(DataError, match=r"^dataset 'mnist' is read from files: pass --data-dir DIR$"):
        load_dataset("mnist")


def test_cifar10_reader_and_truncation(tmp_path):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = np.concatenate([rng.integers(0, 10, (3, 1)), rng.integers(0, 256, (3, 3072))], axis=1)
        records.astype(np.uint8).tofile(tmp_path / name)
    data = load_dataset("cifar10", tmp_path)
    assert data.x_train.shape == (15, 3, 32, 32) and data.x_test.shape == (3, 3, 32, 32)
    raw = (tmp_path / "test_batch.bin").read_bytes()
    (tmp_path / "test_batch.bin").write_bytes(raw[:-7])
    with pytest.raises(DataError, match=r"test_batch\.bin: truncated CIFAR-10 batch"):
        load_dataset("cifar10", tmp_path)


def test_augment_shifts_within_bounds_and_keeps_dtype():
    x = torch.zeros(16, 1, 8, 8, dtype=torch.uint8)
    x[:, :, 4, 4] = 255
    g = torch.Generator().manual_seed(0)
    y = augment(x, g, shift=1, flip=True)
    assert y.shape == x.shape and y.dtype == torch.uint8
    assert (y == 255).sum(dim=(1, 2, 3)).tolist() == [1] * 16  # the dot moved, never lost
    rows, cols = torch.nonzero(y[:, 0] == 255, as_tuple=True)[1:]
    assert rows.min() >= 3 and rows.max() <= 5
    assert len({(r, c) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)}) > 1


def test_synthetic_sets():
    cls, pose = load_dataset("synthetic"), load_dataset("synthetic-pose")
    assert cls.num_outputs == 10 and cls.task == "classification"
    assert pose.task == "pose" and pose.y_train.shape[1:] == (4, 2) and pose.head_test is not None


def _npz(path, x, y):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x, y=y)


def test_npz_dataset_is_your_own_images(tmp_path):
    rng = np.random.default_rng(0)
    _npz(tmp_path / "train.npz", rng.integers(0, 64, (20, 6, 5), dtype=np.uint8),
         rng.integers(0, 3, 20))
    _npz(tmp_path / "test.npz", rng.integers(0, 64, (7, 6, 5), dtype=np.uint8), np.arange(7) % 3)
    data = load_dataset("npz", tmp_path)
    assert data.input_shape == (1, 6, 5)
    assert data.num_outputs == 3  # the training labels 0..K-1
    assert data.input_bits == 6 and data.input_scale == 1 / 63  # fewest bits for pixels < 64
    assert torch.equal(data.x_test[:, 0], torch.from_numpy(np.load(tmp_path / "test.npz")["x"]))


@pytest.mark.parametrize("x, y, message", [
    (np.zeros((4, 3, 3), np.float32), np.zeros(4, np.int64), "store pixels as uint8"),
    (np.zeros((4, 3, 3), np.uint8), np.zeros(5, np.int64), "do not match"),
    (np.zeros((4, 3, 3), np.uint8), -np.ones(4, np.int64), "class indices"),
])
def test_npz_dataset_errors_say_what_to_fix(tmp_path, x, y, message):
    _npz(tmp_path / "train.npz", x, y)
    _npz(tmp_path / "test.npz", x, y)
    with pytest.raises(DataError, match=message):
        load_dataset("npz", tmp_path)


def test_npz_dataset_missing_or_pickled_files_are_errors(tmp_path):
    with pytest.raises(DataError, match="train.npz and test.npz"):
        load_dataset("npz", tmp_path)
    np.savez(tmp_path / "train.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    np.savez(tmp_path / "test.npz", x=np.zeros((1, 2, 2), np.uint8), y=np.zeros(1, np.int64))
    with pytest.raises(DataError, match="array of Python objects, which bitfold does not unpickle"):
        load_dataset("npz", tmp_path)
