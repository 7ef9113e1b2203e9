"""The IDX reader against files written here, byte by byte."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from graphprune.data import read_idx


def _idx_bytes(array: np.ndarray, type_code: int) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("compressed", [False, True])
def test_reads_uint8_images_raw_and_gzipped(tmp_path, compressed):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    payload = _idx_bytes(images, 0x08)
    path = tmp_path / ("images-idx3-ubyte" + (".gz" if compressed else ""))
    path.write_bytes(gzip.compress(payload) if compressed else payload)
    result = read_idx(path)
    assert result.dtype == np.uint8 and result.shape == (2, 3, 4)
    np.testing.assert_array_equal(result, images)


def test_reads_big_endian_int32_as_native(tmp_path):
    values = np.array([1, -2, 70000], dtype=np.int32)
    path = tmp_path / "labels"
    path.write_bytes(_idx_bytes(values, 0x0C))
    result = read_idx(path)
    assert result.dtype.isnative
    np.testing.assert_array_equal(result, values)


def test_rejects_bad_magic_and_truncated_payload(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(_idx_bytes(np.zeros(10, dtype=np.uint8), 0x08)[:-3])
    with pytest.raises(ValueError, match="payload"):
        read_idx(short)
