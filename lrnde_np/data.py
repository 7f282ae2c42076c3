"""Data: an MNIST IDX loader, a seeded train/held-out split, and the spiral of Chen et al. (2018).

MNIST is read from a directory the caller names (nothing here assumes where it lives).  The IDX format
(LeCun et al.): a 4-byte magic number ``0x00 0x00 <type> <ndim>``, ``ndim`` big-endian uint32 sizes, then
the data, big-endian, row-major.  Files may be gzip-compressed (detected from their first bytes, not the
name).  Every check failure raises a ValueError naming the file and what is wrong.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass

import numpy as np
from numba import njit

# IDX type codes → big-endian numpy dtypes.
IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path):
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise ValueError(f"{path}: corrupt gzip data ({exc})") from exc
    return raw


def read_idx(path, expected_magic=None) -> np.ndarray:
    """The array stored in an IDX file (gzip or raw), in native byte order.

    ``expected_magic`` (e.g. :data:`IMAGES_MAGIC`) rejects files of another type or dimension.
    """
    path = os.fspath(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES or raw[3] == 0:
        raise ValueError(f"{path}: not an IDX file (magic number 0x{magic:08x})")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"{path}: magic number 0x{magic:08x}, expected 0x{expected_magic:08x}")
    dtype, ndim = IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: header truncated (needs {header} bytes for {ndim} dimensions, file has {len(raw)})")
    shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{path}: {len(raw)} bytes, but a {dtype.name} array of shape {shape} needs {expected} "
            f"({'truncated' if len(raw) < expected else 'trailing data'})"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def _find(directory, prefix, kind, ndim):
    names = [f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"]
    for name in names:
        for candidate in (name, name + ".gz"):
            path = os.path.join(directory, candidate)
            if os.path.isfile(path):
                return path
    raise ValueError(f"data directory {directory!r}: no {names[0]}[.gz] file found")


def load_mnist(directory, split="test"):
    """(images, labels) of an MNIST split from ``directory``.

    images: float64 (N, rows·cols) scaled to [0, 1]; labels: int64 (N,) in 0…9.
    ``split`` is "test" (t10k-*, 10,000 images) or "train" (train-*, 60,000).
    """
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ValueError(f"data directory {directory!r} does not exist")
    prefix = _SPLIT_PREFIX[split]
    images_path = _find(directory, prefix, "images", 3)
    labels_path = _find(directory, prefix, "labels", 1)
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images_path} has {images.shape[0]} images but {labels_path} has {labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise ValueError(f"{images_path}: no images")
    if labels.max() > 9:
        raise ValueError(f"{labels_path}: labels must lie in 0…9, found {int(labels.max())}")
    features = images.reshape(images.shape[0], -1).astype(np.float64) / 255.0
    return features, labels.astype(np.int64)


def split(images, labels, n_train, seed):
    """A seeded random split: (train_images, train_labels, heldout_images, heldout_labels).

    The permutation comes from ``numpy.random.default_rng(seed)``; the first ``n_train`` samples train,
    the rest are held out.  The experiments use 8,000 / 2,000 of the 10,000 MNIST test images.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"labels: {labels.shape[0]} labels for {images.shape[0]} images")
    n = images.shape[0]
    if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) or not 0 < n_train < n:
        raise ValueError(f"n_train must be an integer in 1…{n - 1}, got {n_train!r}")
    order = np.random.default_rng(seed).permutation(n)
    train, held = order[:n_train], order[n_train:]
    return images[train], labels[train], images[held], labels[held]


# ----------------------------------------------------------------------------------------------------------
# The spiral of Chen et al. 2018 (torchdiffeq examples/ode_demo.py).

#: ode_demo's ``true_A``.
SPIRAL_A = np.array([[-0.1, 2.0], [-2.0, -0.1]])
SPIRAL_Y0 = np.array([2.0, 0.0])


@njit(cache=True)
def spiral_true_rhs(t, y, p, out):
    """The true spiral field on a flat batch of 2-vectors: du/dt = u³·A (u a row vector, A = ``p`` 2×2 flat).

    torchdiffeq computes ``torch.mm(y**3, true_A)`` with y a (1, 2) row, i.e. du_j = Σ_i u_i³ A_ij
    (``Aᵀu³`` in column notation); this follows the code.
    """
    for s in range(y.size // 2):
        a = y[2 * s] ** 3
        b = y[2 * s + 1] ** 3
        out[2 * s] = a * p[0] + b * p[2]
        out[2 * s + 1] = a * p[1] + b * p[3]


@dataclass(frozen=True)
class SpiralData:
    t: np.ndarray  # (n_points,)
    y: np.ndarray  # (n_points, 2)


def spiral_data(n_points=1000, t_end=25.0, y0=SPIRAL_Y0, A=SPIRAL_A, rtol=1e-10, atol=1e-12) -> SpiralData:
    """The true spiral sampled at ``linspace(0, t_end, n_points)`` (ode_demo: 1000 points on [0, 25])."""
    from .ode import solve_ode

    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 2:
        raise ValueError(f"n_points must be an integer ≥ 2, got {n_points!r}")
    t = np.linspace(0.0, float(t_end), int(n_points))
    sol = solve_ode(
        spiral_true_rhs,
        (0.0, float(t_end)),
        np.asarray(y0, dtype=np.float64),
        np.ascontiguousarray(np.asarray(A, dtype=np.float64).ravel()),
        rtol=rtol,
        atol=atol,
        saveat=t,
    )
    if not sol.success:
        raise RuntimeError(f"spiral_data: the reference solve failed: {sol.message}")
    return SpiralData(t=t, y=sol.y)
