"""Images of any size with 1 or 3 channels (issue 15 item 1, first part): prepare keeps their shape,
the trunk is sized by the data, and a pool whose tasks differ in shape is one line naming both."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from auxsel.models import load_model
from conftest import copy_project, run_stage
from test_check import auxsel
from test_pipeline import tiny_params


def _write(path: Path, images: np.ndarray, labels: np.ndarray, nested: bool) -> None:
    column = [img.tolist() for img in images] if nested else \
        pa.FixedSizeListArray.from_arrays(pa.array(images.reshape(-1), pa.uint8()), int(np.prod(images.shape[1:])))
    pq.write_table(pa.table({"pixels": column, "digit": labels}), path)


def _params(tmp_path: Path, shapes: dict[str, tuple[int, ...]], nested: bool = True) -> dict:
    """A target and a candidate from local Parquet files; images whose class shows in their brightness."""
    rng = np.random.default_rng(0)
    tasks = {}
    for name, shape in shapes.items():
        labels = rng.integers(0, 3, 120)
        images = np.clip(rng.normal(60 + 60 * labels.reshape(-1, *[1] * len(shape)), 20, (120, *shape)), 0, 255).astype(np.uint8)
        _write(tmp_path / f"{name}.parquet", images, labels, nested)
        tasks[name] = {"source": "files", "data_files": str(tmp_path / f"{name}.parquet"), "inputs": ["pixels"],
                       "label": "digit", "num_classes": 3, "dev_fraction": 0.25, "test_fraction": 0.25}
    params = tiny_params()
    names = list(shapes)
    params.update(tasks=tasks, target=names[0], candidates=names[1:], seeds=[0])
    params["train"].update(epochs=8)
    return params


@pytest.mark.parametrize("shape, nested", [((20, 24, 3), True), ((28, 28), False)], ids=["rgb 20x24 nested", "gray 28x28 flat"])
def test_a_pool_of_other_images_trains_through_the_stages(tmp_path, shape, nested):
    root = copy_project(tmp_path / "p")
    (root / "params.yaml").write_text(yaml.safe_dump(_params(tmp_path, {"mine": shape, "more": shape}, nested)))
    for task in ("mine", "more"):
        run_stage(root, "prepare", "--task", task)
        assert json.loads((root / f"data/prepared/{task}/meta.json").read_text())["input_shape"] == list(shape)
    run_stage(root, "baseline", "--task", "mine", "--seed", "0")
    run_stage(root, "screen", "--aux", "more", "--seed", "0")
    model = load_model(root / "results/baseline/mine/seed-0/model.safetensors")  # the saved spec rebuilds it
    assert model.spec["input_shape"] == list(shape)
    assert model.trunk.conv1.weight.shape[1] == (shape[2] if len(shape) == 3 else 1)
    summary = json.loads((root / "results/screen/more/seed-0/summary.json").read_text())
    assert summary["metrics"]["holdout"]["accuracy"] > 0.6  # the brightness is learnt: the pixels reached the trunk
    assert auxsel(root, "check").returncode == 0


def test_tasks_of_different_image_shapes_are_refused_naming_both(tmp_path):
    root = copy_project(tmp_path / "p")
    (root / "params.yaml").write_text(yaml.safe_dump(_params(tmp_path, {"mine": (28, 28), "big": (36, 36)})))
    message = "task big: images are 36x36, the target mine's 28x28; one shared trunk takes one input shape: resize or pad one of them"
    proc = auxsel(root, "check")
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {message}", proc.stderr
    for task in ("mine", "big"):
        run_stage(root, "prepare", "--task", task)
    screen = run_stage(root, "screen", "--aux", "big", "--seed", "0", check=False)
    assert screen.returncode == 2 and screen.stderr.strip() == f"error: {message}", screen.stderr
