"""Output files of a command: checked (and their folders created) BEFORE the job runs, written atomically after.

A job can take minutes; finding out at the end that ``--report`` points into a missing folder would throw
that work away.  So every output path is validated first: not a folder, its folder created (as ``--save``
and ``--onnx`` always did) and writable, no two outputs on the same file.  A file that already exists gets a
one-line note, since it will be replaced.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import CliError

__all__ = ["prepare_outputs", "OUTPUT_OPTIONS"]

#: option dest -> the option as typed (every option that names a file graphprune writes)
OUTPUT_OPTIONS = {"onnx": "--onnx", "save": "--save", "report": "--report", "dot": "--dot", "svg": "--svg",
                  "html": "--html"}


def _targets(args: argparse.Namespace) -> list[tuple[str, Path]]:
    out = []
    for dest, flag in OUTPUT_OPTIONS.items():
        value = getattr(args, dest, None)
        if value:
            out.append((flag, Path(value)))
            if dest == "save":  # save_pruned writes the plan beside the model
                out.append((flag, Path(value + ".plan.json")))
    return out


def _check_one(flag: str, path: Path) -> None:
    if path.is_dir():
        raise CliError(f"{flag} {path} is a folder", f"give {flag} a file name, e.g. {path / 'out'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create the folder {path.parent} for {flag}: {exc.strerror or exc}",
                       f"choose a {flag} path in a folder you can write") from None
    if not os.access(path.parent, os.W_OK):
        raise CliError(f"the folder {path.parent} for {flag} is not writable", f"choose another {flag} path")


def prepare_outputs(args: argparse.Namespace) -> None:
    """Validate every output path of ``args`` and create its folder; note files that will be replaced."""
    seen: dict[Path, str] = {}
    for flag, path in _targets(args):
        key = path.resolve()
        if key in seen:
            raise CliError(f"{seen[key]} and {flag} both write {path}", "give each output its own file")
        seen[key] = flag
        _check_one(flag, path)
    for flag, path in _targets(args):
        if path.is_file():
            print(f"graphprune: replacing existing {path}", file=sys.stderr)
