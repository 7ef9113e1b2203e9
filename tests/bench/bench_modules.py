"""Loading a bench script as a module in the tests (the bench folder is not a package)."""
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def load_bench(name: str):
    """``bench/<name>.py`` imported under ``name``, with ``bench/`` on the path for its own imports."""
    sys.path.insert(0, str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # NOTE: dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module
