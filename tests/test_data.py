"""Data: the IDX reader (raw and gzip round trips, every malformed-file error names the file), load_mnist on
synthetic files and — when the development/CI copy is present — on the real MNIST test split, the seeded
train/held-out split, and the spiral data against a SciPy DOP853 solve of the true dynamics.
"""

import gzip
from pathlib import Path

import numpy as np
import pytest
from idx_files import idx_bytes, mnist_files, write
from scipy.integrate import solve_ivp

from lrnde_np.data import (
    IMAGES_MAGIC,
    LABELS_MAGIC,
    SPIRAL_A,
    SPIRAL_Y0,
    load_mnist,
    read_idx,
    spiral_data,
    spiral_true_rhs,
    split,
)

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def error_of(func, *args, **kwargs):
    with pytest.raises(ValueError) as exc:
        func(*args, **kwargs)
    return str(exc.value)


# ----------------------------------------------------------------------------------------------------------
# read_idx


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "dtype,shape",
    [
        ("u1", (7,)),
        ("u1", (5, 3, 4)),
        ("i1", (4, 2)),
        ("i2", (3, 5)),
        ("i4", (2, 3, 2)),
        ("f4", (6,)),
        ("f8", (2, 2, 2, 3)),
        ("u1", (0, 28, 28)),
    ],
)
def test_idx_round_trip(tmp_path, dtype, shape, compress):
    rng = np.random.default_rng(sum(shape) + len(dtype))
    dt = np.dtype(dtype)
    if dt.kind == "f":
        array = rng.normal(size=shape).astype(dt) * 1e3
    else:
        info = np.iinfo(dt)
        array = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dt)
    path = write(tmp_path / ("a.idx.gz" if compress else "a.idx"), idx_bytes(array), compress)
    back = read_idx(path)
    assert back.shape == shape and back.dtype == dt and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_gzip_is_detected_from_the_content_not_the_name(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    gz_named_raw = write(tmp_path / "raw.gz", idx_bytes(array))
    raw_named_gz = write(tmp_path / "data-idx3-ubyte", idx_bytes(array), compress=True)
    np.testing.assert_array_equal(read_idx(gz_named_raw), array)
    np.testing.assert_array_equal(read_idx(raw_named_gz), array)
    assert read_idx(str(raw_named_gz), IMAGES_MAGIC).shape == (2, 3, 4)


def test_known_bytes_decode_big_endian(tmp_path):
    # 2 int16 values 0x0102 = 258 and 0xFFFE = -2, written byte by byte
    path = write(tmp_path / "x", bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE]))
    np.testing.assert_array_equal(read_idx(path), [258, -2])


@pytest.mark.parametrize("compress", [False, True])
def test_malformed_idx_files_name_the_file(tmp_path, compress):
    good = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))
    cases = {
        "bad_magic_type": (bytes([0, 0, 0x07, 2]) + good[4:], "not an IDX file"),
        "bad_magic_prefix": (bytes([1, 0, 0x08, 2]) + good[4:], "not an IDX file"),
        "zero_dims": (bytes([0, 0, 0x08, 0]), "not an IDX file"),
        "too_short": (good[:3], "too short"),
        "header_truncated": (good[:9], "header truncated"),
        "truncated": (good[:-1], "truncated"),
        "trailing": (good + b"\x00", "trailing data"),
        "empty": (b"", "too short"),
    }
    for name, (data, text) in cases.items():
        path = write(tmp_path / name, data, compress)
        msg = error_of(read_idx, path)
        assert str(path) in msg and text in msg, (name, msg)


def test_wrong_magic_for_the_expected_kind(tmp_path):
    path = write(tmp_path / "labels", idx_bytes(np.arange(5, dtype=np.uint8)))
    msg = error_of(read_idx, path, IMAGES_MAGIC)
    assert str(path) in msg and "0x00000801" in msg and "0x00000803" in msg
    assert read_idx(path, LABELS_MAGIC).shape == (5,)


def test_corrupt_gzip_names_the_file(tmp_path):
    packed = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)))
    truncated = write(tmp_path / "cut.gz", packed[: len(packed) // 2])
    msg = error_of(read_idx, truncated)
    assert str(truncated) in msg and "corrupt gzip" in msg
    flipped = bytearray(packed)
    flipped[len(flipped) // 2] ^= 0xFF
    flipped[-8] ^= 0xFF  # and the CRC
    path = write(tmp_path / "flip.gz", bytes(flipped))
    msg = error_of(read_idx, path)
    assert str(path) in msg and "corrupt gzip" in msg


def test_unreadable_path_is_a_value_error(tmp_path):
    missing = tmp_path / "nope"
    assert str(missing) in error_of(read_idx, missing)
    assert str(tmp_path) in error_of(read_idx, tmp_path)  # a directory


# ----------------------------------------------------------------------------------------------------------
# load_mnist on synthetic files


@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist_synthetic(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 5, 6), dtype=np.uint8)
    images[0, 0, 0], images[1, 0, 0] = 0, 255
    labels = rng.integers(0, 10, 30, dtype=np.uint8)
    mnist_files(tmp_path, images, labels, compress=compress)
    x, y = load_mnist(tmp_path)
    assert x.shape == (30, 30) and x.dtype == np.float64 and y.dtype == np.int64
    np.testing.assert_array_equal(x, images.reshape(30, 30) / 255.0)
    np.testing.assert_array_equal(y, labels)
    assert x.min() == 0.0 and x.max() == 1.0
    # the training split reads train-* files
    assert str(tmp_path) in error_of(load_mnist, tmp_path, "train")
    mnist_files(tmp_path, images[:7], labels[:7], prefix="train", compress=compress)
    assert load_mnist(tmp_path, split="train")[0].shape == (7, 30)
    assert "split" in error_of(load_mnist, tmp_path, "valid")


def test_load_mnist_errors_name_the_file(tmp_path):
    images = np.zeros((4, 3, 3), np.uint8)
    # labels > 9
    d = tmp_path / "labels"
    d.mkdir()
    mnist_files(d, images, [1, 2, 10, 3])
    msg = error_of(load_mnist, d)
    assert str(d / "t10k-labels-idx1-ubyte") in msg and "0…9" in msg
    # count mismatch
    d = tmp_path / "count"
    d.mkdir()
    mnist_files(d, images, [1, 2, 3])
    msg = error_of(load_mnist, d)
    assert str(d / "t10k-images-idx3-ubyte") in msg and str(d / "t10k-labels-idx1-ubyte") in msg
    assert "4 images" in msg and "3 labels" in msg
    # images and labels swapped
    d = tmp_path / "swapped"
    d.mkdir()
    write(d / "t10k-images-idx3-ubyte", idx_bytes(np.zeros(4, np.uint8)))
    write(d / "t10k-labels-idx1-ubyte", idx_bytes(images))
    msg = error_of(load_mnist, d)
    assert str(d / "t10k-images-idx3-ubyte") in msg and "magic" in msg
    # no images
    d = tmp_path / "empty"
    d.mkdir()
    mnist_files(d, np.zeros((0, 3, 3), np.uint8), np.zeros(0, np.uint8))
    assert "no images" in error_of(load_mnist, d)
    # missing directory, missing files
    missing = tmp_path / "missing"
    msg = error_of(load_mnist, missing)
    assert str(missing) in msg and "does not exist" in msg
    d = tmp_path / "only_images"
    d.mkdir()
    write(d / "t10k-images-idx3-ubyte", idx_bytes(images))
    msg = error_of(load_mnist, d)
    assert str(d) in msg and "t10k-labels-idx1-ubyte" in msg
    d = tmp_path / "no_files"
    d.mkdir()
    msg = error_of(load_mnist, d)
    assert str(d) in msg and "t10k-images-idx3-ubyte" in msg


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"MNIST test split not present at {MNIST_DIR}")
def test_load_real_mnist_test_split():
    x, y = load_mnist(MNIST_DIR)
    assert x.shape == (10_000, 784) and x.dtype == np.float64
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(np.round(x * 255.0), x * 255.0)  # 8-bit grey levels
    assert y.dtype == np.int64 and y.min() == 0 and y.max() == 9
    counts = np.bincount(y, minlength=10)
    assert counts.sum() == 10_000 and counts.min() >= 800 and counts.max() <= 1200
    # the published class counts and first labels of the MNIST test set
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    # images are digits on a dark background: mostly zero pixels, a bright centre
    img = x.reshape(-1, 28, 28)
    assert 0.7 < np.mean(x == 0) < 0.9
    assert img[:, 10:18, 10:18].mean() > 3 * img[:, :4, :].mean()


# ----------------------------------------------------------------------------------------------------------
# split


def test_split_is_seeded_disjoint_and_complete():
    n = 50
    images = np.column_stack([np.arange(n), np.arange(n) * 2.0])
    labels = np.arange(n) % 10
    a = split(images, labels, 35, seed=4)
    b = split(images, labels, 35, seed=4)
    c = split(images, labels, 35, seed=5)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    tr_x, tr_y, te_x, te_y = a
    assert tr_x.shape == (35, 2) and te_x.shape == (15, 2) and tr_y.shape == (35,) and te_y.shape == (15,)
    ids_train, ids_held = tr_x[:, 0].astype(int), te_x[:, 0].astype(int)
    assert set(ids_train).isdisjoint(ids_held)
    assert sorted(np.concatenate([ids_train, ids_held]).tolist()) == list(range(n))
    # images and labels stay paired
    np.testing.assert_array_equal(tr_y, ids_train % 10)
    np.testing.assert_array_equal(te_y, ids_held % 10)
    np.testing.assert_array_equal(tr_x[:, 1], 2.0 * ids_train)
    # the permutation is default_rng(seed)'s
    np.testing.assert_array_equal(ids_train, np.random.default_rng(4).permutation(n)[:35])


def test_split_validation():
    x, y = np.zeros((10, 3)), np.zeros(10, int)
    for bad in (0, 10, 11, -1, 2.5, True):
        assert "n_train" in error_of(split, x, y, bad, 0)
    assert "labels" in error_of(split, x, np.zeros(9, int), 5, 0)


# ----------------------------------------------------------------------------------------------------------
# spiral


def test_spiral_rhs_matches_the_row_vector_formula():
    rng = np.random.default_rng(1)
    y = rng.normal(size=2 * 7)
    out = np.empty_like(y)
    A = rng.normal(size=(2, 2))
    spiral_true_rhs(0.0, y, np.ascontiguousarray(A.ravel()), out)
    np.testing.assert_allclose(out.reshape(7, 2), (y.reshape(7, 2) ** 3) @ A, rtol=1e-14, atol=1e-14)


def reference_spiral(t, A=SPIRAL_A):
    sol = solve_ivp(
        lambda _, u: (u**3) @ A, (t[0], t[-1]), SPIRAL_Y0, method="DOP853", rtol=1e-13, atol=1e-13, t_eval=t
    )
    assert sol.success
    return sol.y.T


@pytest.mark.parametrize("n_points,t_end", [(1000, 25.0), (37, 3.5)])
def test_spiral_data_matches_scipy(n_points, t_end):
    data = spiral_data(n_points, t_end)
    np.testing.assert_array_equal(data.t, np.linspace(0.0, t_end, n_points))
    assert data.y.shape == (n_points, 2)
    np.testing.assert_array_equal(data.y[0], SPIRAL_Y0)
    ref = reference_spiral(data.t)
    np.testing.assert_allclose(data.y, ref, rtol=0, atol=1e-8)
    # the test can tell the two conventions apart: A u³ (column vector) gives another curve
    assert np.max(np.abs(reference_spiral(data.t, SPIRAL_A.T) - ref)) > 1e-2
    # the trajectory spirals inwards
    r = np.linalg.norm(data.y, axis=1)
    assert r[-1] < r[0]


def test_spiral_data_validation():
    for bad in (1, 0, 2.0, True):
        assert "n_points" in error_of(spiral_data, bad)
