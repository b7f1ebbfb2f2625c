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


def _encode(img: np.ndarray, fmt: str) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt)
    return buf.getvalue()


def _write(path: Path, images: np.ndarray, labels: np.ndarray, nested: bool | str) -> None:
    if nested == "png":  # as Hugging Face datasets stores an Image feature: {bytes, path} per row
        import datasets
        from PIL import Image

        features = datasets.Features({"pixels": datasets.Image(), "digit": datasets.Value("int64")})
        datasets.Dataset.from_dict({"pixels": [Image.fromarray(i) for i in images], "digit": labels.tolist()},
                                   features=features).to_parquet(str(path))
        return
    if nested == "jpeg":  # plain encoded files in a binary column
        column = pa.array([_encode(i, "JPEG") for i in images], pa.binary())
    else:
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
    params = _params(tmp_path, {"mine": shape, "more": shape}, nested)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    for task in ("mine", "more"):
        run_stage(root, "prepare", "--task", task)
        assert json.loads((root / f"data/prepared/{task}/meta.json").read_text())["input_shape"] == list(shape)
    run_stage(root, "baseline", "--task", "mine", "--seed", "0")
    run_stage(root, "screen", "--aux", "more", "--seed", "0")
    model = load_model(root / "results/baseline/mine/seed-0/model.safetensors")  # the saved spec rebuilds it
    assert model.spec["input_shape"] == list(shape)
    channels = shape[2] if len(shape) == 3 else 1
    assert model.trunk.conv1.weight.shape[1] == channels
    stats = json.loads((root / "data/prepared/mine/meta.json").read_text())["pixel_stats"]
    pixels = pq.read_table(root / "data/prepared/mine/train.parquet").column("image").to_pylist()
    pixels = np.asarray(pixels, dtype=float).reshape(len(pixels), -1, channels) / 255
    assert np.allclose(stats["mean"], pixels.mean(axis=(0, 1)), atol=1e-5) and len(stats["std"]) == channels
    assert model.spec["normalize"] == "mnist" and model.trunk.pixel_mean.flatten().tolist() == pytest.approx([0.1307])
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


def test_encoded_images_are_decoded_and_bad_ones_named(tmp_path):
    """JPEG bytes in a binary column: decoded to their size (grayscale stays one channel); a row
    that is not an image, or images of two sizes, are one line naming the task and column."""
    root = copy_project(tmp_path / "p")
    params = _params(tmp_path, {"mine": (20, 20), "more": (20, 20)}, "jpeg")
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage(root, "prepare", "--task", "mine")
    assert json.loads((root / "data/prepared/mine/meta.json").read_text())["input_shape"] == [20, 20]
    train = pq.read_table(root / "data/prepared/mine/train.parquet")
    pixels = np.asarray(train.column("image").to_pylist()[0], dtype=float)
    assert pixels.shape == (400,) and 0 < pixels.mean() < 255
    table = pq.read_table(tmp_path / "more.parquet")
    bad = table.column("pixels").to_pylist()
    bad[3] = b"not an image"
    pq.write_table(table.set_column(0, "pixels", pa.array(bad, pa.binary())), tmp_path / "more.parquet")
    proc = run_stage(root, "prepare", "--task", "more", check=False)
    # the row is named by its id (source split : row number)
    assert proc.returncode == 2 and proc.stderr.startswith("error: task more: column 'pixels' row all:3 is not a readable image"), proc.stderr
    bad[3] = _encode(np.zeros((24, 24), np.uint8), "PNG")
    pq.write_table(table.set_column(0, "pixels", pa.array(bad, pa.binary())), tmp_path / "more.parquet")
    proc = run_stage(root, "prepare", "--task", "more", check=False)
    assert proc.returncode == 2 and "images differ in size or channels ((20, 20), (24, 24))" in proc.stderr, proc.stderr


def test_a_resnet_trunk_trains_an_rgb_pool_from_local_files(tmp_path):
    """`model.kind: resnet` (issue 15 item 2): a tiny 32x32 RGB pool of PNG files through the stages;
    the saved model rebuilds from its spec and gives the same outputs."""
    import torch

    root = copy_project(tmp_path / "p")
    params = _params(tmp_path, {"mine": (32, 32, 3), "more": (32, 32, 3)}, "png")
    params["model"] = {"kind": "resnet", "widths": [8, 16], "blocks": 1}  # normalize: the target's statistics
    params["train"].update(epochs=6, lr=0.05)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    for task in ("mine", "more"):
        run_stage(root, "prepare", "--task", task)
    run_stage(root, "baseline", "--task", "mine", "--seed", "0")
    run_stage(root, "screen", "--aux", "more", "--seed", "0")
    model = load_model(root / "results/baseline/mine/seed-0/model.safetensors")
    assert type(model.trunk).__name__ == "ResNetTrunk" and model.trunk.out_dim == 16
    assert model.spec["widths"] == [8, 16]
    # the schema's default normalisation: the target's own per-channel statistics, from prepare
    stats = json.loads((root / "data/prepared/mine/meta.json").read_text())["pixel_stats"]
    pixels = np.asarray(pq.read_table(root / "data/prepared/mine/train.parquet").column("image").to_pylist(), dtype=float)
    assert np.allclose(stats["mean"], (pixels.reshape(len(pixels), -1, 3) / 255).mean(axis=(0, 1)), atol=1e-5)
    assert model.spec["normalize"] == "target" and model.spec["pixel_mean"] == stats["mean"] and len(stats["std"]) == 3
    assert model.trunk.pixel_mean.flatten().tolist() == pytest.approx(stats["mean"])
    assert sum(isinstance(m, torch.nn.GroupNorm) for m in model.trunk.modules()) >= 5
    summary = json.loads((root / "results/baseline/mine/seed-0/summary.json").read_text())
    assert summary["metrics"]["test"]["accuracy"] > 0.6, summary["metrics"]  # the brightness is learnt
    images = torch.tensor(pq.read_table(root / "data/prepared/mine/test.parquet").column("image").to_pylist(),
                          dtype=torch.uint8).view(-1, 32, 32, 3)
    again = load_model(root / "results/baseline/mine/seed-0/model.safetensors")
    model.eval(), again.eval()
    assert torch.equal(model({"image": images}, "mine"), again({"image": images}, "mine"))
    assert auxsel(root, "check").returncode == 0
