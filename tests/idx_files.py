"""Synthetic IDX files for the data, training and CLI tests, written independently of lrnde_np's reader."""

import gzip

import numpy as np

TYPE_CODES = {
    np.dtype("u1"): 0x08,
    np.dtype("i1"): 0x09,
    np.dtype("i2"): 0x0B,
    np.dtype("i4"): 0x0C,
    np.dtype("f4"): 0x0D,
    np.dtype("f8"): 0x0E,
}


def idx_bytes(array, type_code=None, dims=None):
    """An IDX file's bytes written independently of the reader: magic, big-endian sizes, big-endian data."""
    array = np.asarray(array)
    code = TYPE_CODES[array.dtype.newbyteorder("=")] if type_code is None else type_code
    shape = array.shape if dims is None else dims
    header = bytes([0, 0, code, len(shape)]) + b"".join(int(n).to_bytes(4, "big") for n in shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, data, compress=False):
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def mnist_files(directory, images, labels, prefix="t10k", compress=False):
    ext = ".gz" if compress else ""
    write(directory / f"{prefix}-images-idx3-ubyte{ext}", idx_bytes(np.asarray(images, np.uint8)), compress)
    write(directory / f"{prefix}-labels-idx1-ubyte{ext}", idx_bytes(np.asarray(labels, np.uint8)), compress)
