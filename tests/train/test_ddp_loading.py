"""graphprune.train.ddp reads --checkpoint/--module/--teacher files safely unless --trust-file is given."""
from __future__ import annotations

import io
import pathlib
import pickle
import tarfile

import pytest
import torch

import models
from graphprune.export import PRUNED_FORMAT, save_pruned
from graphprune.train import ddp, save_checkpoint, save_module
from graphprune.train.checkpoint import UntrustedFileError

TRAIN = ["--dataset", "synthetic", "--train-subset", "8", "--test-subset", "8", "--epochs", "1",
         "--batch-size", "8", "--no-progress"]


class _RunsCode:
    """Unpickling this writes ``marker``: a stand-in for whatever a crafted file would do."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.write_text, (self.marker, "code from the file ran")


def _legacy_tar_file(path: pathlib.Path, marker: pathlib.Path) -> pathlib.Path:
    """A legacy ``.tar`` torch file: ``weights_only`` refuses it with a RuntimeError, a full load unpickles it."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, obj in [("storages", _RunsCode(marker)), ("tensors", 0), ("pickle", {})]:
            data = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def no_world(monkeypatch):
    for variable in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize("flag", ["--checkpoint", "--module", "--teacher"])
def test_crafted_file_runs_nothing_without_trust(tmp_path, no_world, flag):
    marker = tmp_path / "marker"
    crafted = _legacy_tar_file(tmp_path / "crafted.pt", marker)
    source = ["--model", "lenet5", "--teacher", str(crafted)] if flag == "--teacher" else [flag, str(crafted)]
    with pytest.raises(UntrustedFileError, match=r"run code stored in the file.*--trust-file"):
        ddp.main(source + TRAIN)
    assert not marker.exists()
    # The file is live: with --trust-file the full unpickle runs it (the load then fails on its junk).
    with pytest.raises(Exception):
        ddp.main(source + TRAIN + ["--trust-file"])
    assert marker.exists()


def test_plain_pickle_is_refused_before_any_code_runs(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "crafted.pt"
    torch.save(_RunsCode(marker), path)
    with pytest.raises(UntrustedFileError, match="--trust-file"):
        ddp.load_any_model(str(path))
    assert not marker.exists()


def test_registry_checkpoint_loads_without_trust(tmp_path):
    torch.manual_seed(0)
    net = models.build("lenet5").eval()
    path = tmp_path / "lenet.pt"
    save_checkpoint(path, net, "lenet5")
    loaded = ddp.load_any_model(str(path)).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))


@pytest.mark.parametrize("save", [save_module, lambda path, net: save_pruned(net, path)], ids=["module", "pruned"])
def test_own_module_files_load_with_trust(tmp_path, save):
    net = torch.fx.symbolic_trace(models.build("lenet5").eval())
    path = tmp_path / "net.pt"
    save(path, net)
    if save is not save_module:
        assert torch.load(path, weights_only=True)["format"] == PRUNED_FORMAT
    with pytest.raises(UntrustedFileError):
        ddp.load_any_model(str(path))
    loaded = ddp.load_any_model(str(path), trusted=True)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
