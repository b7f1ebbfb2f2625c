"""`auxsel check` (issue 15 item 4): a pool looked at before training, and the screening job
refusing the same leak the check names."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from conftest import bin_path, copy_project, run_stage
from test_pipeline import tiny_params


def auxsel(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([f"{bin_path().split(':')[0]}/auxsel", *args], cwd=root, capture_output=True, text=True)


def test_the_default_pool_checks_out_with_its_table(tmp_path, raw_dir):
    root = copy_project(tmp_path / "p", raw_dir)
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(candidates=("left_more", "shuffled", "right"))))
    proc = auxsel(root, "check")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "params.yaml: target left, 3 candidates, seeds [0, 1]" and lines[-1] == "ok"
    assert re.search(r"^left\s+target\s+120\s+60\s+60\s+10\s+0\.\d\d-0\.\d\d\s+image 36x36$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^left_more\s+candidate\s+120\s+60\s+60\s+10\s", proc.stdout, re.M)
    assert not list((root / "data").glob("prepared*"))  # nothing written


def _pool(tmp_path: Path) -> dict:
    """A target from a Parquet file, a candidate built from the same rows (a leak), and a tiny one
    (10x smaller, one class missing)."""
    rows = 200
    pixels = [[(i * 7 + j) % 256 for j in range(256)] for i in range(rows)]  # 16x16, distinct rows
    pq.write_table(pa.table({"pixels": pixels, "digit": [i % 3 for i in range(rows)]}), tmp_path / "mine.parquet")
    pq.write_table(pa.table({"pixels": [[255 - (i + j) % 256 for j in range(256)] for i in range(12)],
                             "digit": [i % 2 for i in range(12)]}), tmp_path / "tiny.parquet")
    spec = {"source": "files", "inputs": ["pixels"], "label": "digit", "num_classes": 3, "dev_fraction": 0.2, "test_fraction": 0.2}
    params = tiny_params()
    params["tasks"] = {"mine": dict(spec, data_files=str(tmp_path / "mine.parquet")),
                       "copy": dict(spec, data_files=str(tmp_path / "mine.parquet"), shuffle_labels=True),
                       "tiny": dict(spec, data_files=str(tmp_path / "tiny.parquet"), dev_fraction=0.25, test_fraction=0.25)}
    params.update(target="mine", candidates=["copy", "tiny"], seeds=[0])
    params["train"].update(epochs=1)
    return params


def _shared(root: Path, split: str) -> int:
    """Rows of the target's split whose pixels are in the candidate's training rows (counted here
    from the prepared files, independently of auxsel's hashing)."""
    def rows(task: str, s: str) -> set:
        return set(map(tuple, pq.read_table(root / f"data/prepared/{task}/{s}.parquet").column("image").to_pylist()))
    return len(rows("mine", split) & rows("copy", "train"))


def test_a_leak_is_an_error_the_screen_refuses_and_small_or_unbalanced_candidates_are_warned(tmp_path):
    root = copy_project(tmp_path / "p")
    (root / "params.yaml").write_text(yaml.safe_dump(_pool(tmp_path)))
    proc = auxsel(root, "check")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "warning: tiny: 6 training rows, under 1/10 of the target's 120" in proc.stdout
    assert "warning: tiny: class 2 missing from train" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "2 error(s)"
    assert not (root / "data/prepared").exists()  # the check writes nothing
    # the pipeline prepares the same splits; its screening job refuses the same leak
    for task in ("mine", "copy"):
        run_stage(root, "prepare", "--task", task)
    dev, test = _shared(root, "dev"), _shared(root, "test")
    assert dev > 10 and test > 10
    line = "error: candidate copy: {} of its training examples are in the target mine's {} split (same inputs); remove them from one of the two tasks"
    assert proc.stderr.strip().splitlines() == [line.format(dev, "dev"), line.format(test, "test")], proc.stderr
    screen = run_stage(root, "screen", "--aux", "copy", "--seed", "0", check=False)
    assert screen.returncode == 2 and screen.stderr.strip() == line.format(dev, "dev"), screen.stderr
    assert not (root / "results/screen/copy").exists()


def test_params_mistakes_and_missing_archives_are_one_line(tmp_path):
    root = copy_project(tmp_path / "p")
    params = tiny_params()
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    proc = auxsel(root, "check")
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: {root / 'data/raw/mnist'}: not fetched; run `python -m stages.fetch --archive mnist` "
        f"(or `snakemake --cores 1 {root / 'data/raw/mnist'}`) first")
    params["train"]["epochs"] = 0
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    proc = auxsel(root, "check")
    assert proc.returncode == 2 and proc.stderr.strip() == "error: params: train.epochs: 0 is less than the minimum of 1"
