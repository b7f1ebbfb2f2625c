"""From a raw task table to validated, split, preprocessed Arrow tables.

Checks come first and name the task and column, because a bad label found after an hour of
screening is an hour lost. Splits are a seeded permutation (test first, then dev, then train)
and caps take prefixes, so lowering `max_train` never changes the test set.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from auxsel.errors import AuxselError
from auxsel.seeding import derive_seed
from auxsel.tasks.sources import SPLITS


@dataclass
class Prepared:
    tables: dict[str, pa.Table]
    meta: dict[str, Any] = field(default_factory=dict)


def _labels(table: pa.Table, task: str, spec: dict[str, Any]) -> np.ndarray:
    col = spec["label"]
    column = table.column(col)
    if column.null_count:
        raise AuxselError(f"task {task}: label column '{col}' has {column.null_count} missing values")
    names = spec.get("label_names")
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        if not names:
            raise AuxselError(f"task {task}: label column '{col}' holds strings; list them in tasks.{task}.label_names")
        index = {n: i for i, n in enumerate(names)}
        values = column.to_pylist()
        unknown = sorted({v for v in values if v not in index})
        if unknown:
            raise AuxselError(f"task {task}: label column '{col}' has values not in label_names: {unknown[:5]}")
        return np.array([index[v] for v in values], dtype=np.int64)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise AuxselError(f"task {task}: label column '{col}' has type {column.type}, expected integers")
    values = column.to_numpy(zero_copy_only=False).astype(np.float64)
    if np.isnan(values).any():
        raise AuxselError(f"task {task}: label column '{col}' has NaN values")
    if (values != np.round(values)).any():
        raise AuxselError(f"task {task}: label column '{col}' has non-integer values")
    labels = values.astype(np.int64)
    bad = labels[(labels < 0) | (labels >= spec["num_classes"])]
    if len(bad):
        raise AuxselError(f"task {task}: label column '{col}' has labels out of range 0..{spec['num_classes'] - 1}: {sorted(set(bad.tolist()))[:5]}")
    return labels


def _check_columns(table: pa.Table, task: str, spec: dict[str, Any], split: str) -> None:
    for col in [*spec["inputs"], spec["label"]]:
        if col not in table.column_names:
            raise AuxselError(f"task {task}: column '{col}' not found in {split} data (columns: {', '.join(table.column_names)})")
    if table.num_rows == 0:
        raise AuxselError(f"task {task}: the {split} data is empty")


def _images(table: pa.Table, task: str, col: str) -> np.ndarray:
    """Images as uint8 [N, H, W] (grayscale) or [N, H, W, 3] (RGB). Nested lists keep their own
    shape; flat rows (fixed-size lists) are square grayscale, or square RGB when their length is
    3 x a square (the two cannot both hold)."""
    column = table.column(col).combine_chunks()
    ids = table.column("id").to_pylist() if "id" in table.column_names else list(range(len(column)))
    encoded = _encoded_images(column, task, col, ids)
    if encoded is not None:
        arr = encoded
    elif pa.types.is_fixed_size_list(column.type) and pa.types.is_uint8(column.type.value_type):
        arr = column.flatten().to_numpy().reshape(len(column), -1)
    else:
        try:
            arr = np.asarray([np.asarray(v, dtype=np.float64) for v in column.to_pylist()], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise AuxselError(f"task {task}: column '{col}' does not hold equal-sized numeric images ({_one(exc)})") from None
        if arr.dtype == object or arr.ndim not in (2, 3, 4):
            raise AuxselError(f"task {task}: column '{col}' does not hold equal-sized numeric images")
        if np.isnan(arr).any():
            raise AuxselError(f"task {task}: column '{col}' has NaN pixels")
        if arr.min() < 0 or arr.max() > 255:
            raise AuxselError(f"task {task}: column '{col}' has pixels outside 0..255")
        arr = np.rint(arr).astype(np.uint8)
    if arr.ndim == 2:  # flat rows
        n = arr.shape[1]
        side, rgb = math.isqrt(n), math.isqrt(n // 3)
        if side * side == n:
            arr = arr.reshape(len(arr), side, side)
        elif n % 3 == 0 and rgb * rgb * 3 == n:
            arr = arr.reshape(len(arr), rgb, rgb, 3)
        else:
            raise AuxselError(f"task {task}: column '{col}' images have {n} values per row: not a square (H x W) "
                              "or square RGB (H x W x 3) image; store them as nested [H][W] or [H][W][C] lists")
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 4 and arr.shape[-1] != 3:
        raise AuxselError(f"task {task}: column '{col}' images have {arr.shape[-1]} channels; 1 or 3 are supported")
    if min(arr.shape[1:3]) < 16:
        raise AuxselError(f"task {task}: column '{col}' images are {arr.shape[1]}x{arr.shape[2]}; the trunk needs at least 16x16")
    return arr


def _encoded_images(column: pa.Array, task: str, col: str, ids: list[Any]) -> np.ndarray | None:
    """PNG/JPEG/... files as bytes (a binary column, or Hugging Face `datasets.Image`'s
    {bytes, path} struct) decoded with Pillow: grayscale stays [H, W], anything else becomes RGB.
    None when the column holds no encoded images."""
    if pa.types.is_struct(column.type) and column.type.get_field_index("bytes") >= 0:
        values = column.field("bytes")
    elif pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        values = column
    else:
        return None
    from PIL import Image, UnidentifiedImageError

    images, shapes = [], set()
    for i, raw in zip(ids, values.to_pylist()):
        if raw is None:
            raise AuxselError(f"task {task}: column '{col}' row {i} has no image bytes")
        try:
            with Image.open(io.BytesIO(raw)) as img:
                arr = np.asarray(img.convert("L" if img.mode in ("1", "L", "I", "I;16", "F") else "RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as exc:
            raise AuxselError(f"task {task}: column '{col}' row {i} is not a readable image ({_one(exc)})") from None
        images.append(arr)
        shapes.add(arr.shape)
    if len(shapes) > 1:
        raise AuxselError(f"task {task}: column '{col}' images differ in size or channels ({', '.join(sorted(map(str, shapes))[:3])}); "
                          "resize them to one size first")
    return np.stack(images)


def _one(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _split(tables: dict[str, pa.Table], task: str, spec: dict[str, Any], seed: int) -> dict[str, pa.Table]:
    rng = np.random.default_rng(derive_seed(seed, "split", task))
    if "all" in tables:
        table = tables["all"]
        order = rng.permutation(table.num_rows)
        n_test = round(spec["test_fraction"] * table.num_rows)
        n_dev = round(spec["dev_fraction"] * table.num_rows)
        parts = {"test": order[:n_test], "dev": order[n_test : n_test + n_dev], "train": order[n_test + n_dev :]}
        out = {k: table.take(pa.array(v)) for k, v in parts.items()}
    else:
        if "train" not in tables:
            raise AuxselError(f"task {task}: no train data (give data_files.train)")
        train = tables["train"]
        train = train.take(pa.array(rng.permutation(train.num_rows)))
        out = {"train": train}
        for split, fraction in (("test", spec["test_fraction"]), ("dev", spec["dev_fraction"])):
            if split in tables:
                out[split] = tables[split].take(pa.array(rng.permutation(tables[split].num_rows)))
            else:  # carve the missing split out of train
                n = round(fraction * out["train"].num_rows)
                out[split], out["train"] = out["train"].slice(0, n), out["train"].slice(n)
    for split in SPLITS:
        cap = spec.get(f"max_{split}")
        n = out[split].num_rows
        if n == 0:
            raise AuxselError(f"task {task}: the {split} split is empty")
        if cap is not None:
            if cap > n:
                raise AuxselError(f"task {task}: max_{split}={cap} but the {split} split has only {n} rows")
            out[split] = out[split].slice(0, cap)
    return out


def _tokenize(table: pa.Table, spec: dict[str, Any], tokenizer: Any, max_length: int, task: str) -> dict[str, pa.Array]:
    import sys

    import datasets

    if not sys.stderr.isatty():
        datasets.disable_progress_bars()
    cols = spec["inputs"]
    for col in cols:
        column = table.column(col)
        if column.null_count or not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            raise AuxselError(f"task {task}: text column '{col}' must hold strings with no missing values")
    ds = datasets.Dataset(table.select(cols))

    def encode(batch: dict[str, list[str]]) -> dict[str, Any]:
        enc = tokenizer(*[batch[c] for c in cols], truncation=True, max_length=max_length, padding="max_length")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    enc = ds.map(encode, batched=True, remove_columns=cols, keep_in_memory=True, desc=f"tokenize {task}")
    ids = np.asarray(enc["input_ids"], dtype=np.int32)
    mask = np.asarray(enc["attention_mask"], dtype=np.int8)
    return {
        "input_ids": pa.FixedSizeListArray.from_arrays(pa.array(ids.ravel()), max_length),
        "attention_mask": pa.FixedSizeListArray.from_arrays(pa.array(mask.ravel()), max_length),
    }


def prepare_task(
    task: str,
    spec: dict[str, Any],
    raw: dict[str, pa.Table],
    seed: int,
    tokenizer: Any = None,
    max_length: int = 64,
) -> Prepared:
    """Validate, split and preprocess one task. `raw` comes from sources.load_task_table."""
    for split, table in raw.items():
        _check_columns(table, task, spec, split)
    labelled = {}
    for split, table in raw.items():
        labels = _labels(table, task, spec)
        if spec.get("shuffle_labels"):
            labels = np.random.default_rng(derive_seed(seed, "shuffle", task, split)).permutation(labels)
        labelled[split] = _with_label(table, spec, labels, split)
    splits = _split(labelled, task, spec, seed)
    kind = "text" if tokenizer is not None else "image"
    out: dict[str, pa.Table] = {}
    shape: list[int] = []
    stats: dict[str, list[float]] = {}
    for split, table in splits.items():
        cols: dict[str, pa.Array] = {"id": table.column("id")}
        if kind == "image":
            if len(spec["inputs"]) != 1:
                raise AuxselError(f"task {task}: image tasks take exactly one input column")
            images = _images(table, task, spec["inputs"][0])
            shape = list(images.shape[1:])
            if split == "train":  # per channel, pixels scaled to [0, 1] (the trunk's `normalize: target`)
                scaled = images.reshape(len(images), -1, shape[2] if len(shape) == 3 else 1).astype(np.float64) / 255.0
                stats = {"mean": scaled.mean(axis=(0, 1)).round(6).tolist(),
                         "std": np.maximum(scaled.std(axis=(0, 1)), 1e-3).round(6).tolist()}
            cols["image"] = pa.FixedSizeListArray.from_arrays(pa.array(images.ravel(), pa.uint8()), int(np.prod(shape)))
        else:
            for col in spec["inputs"]:
                cols[col] = table.column(col)
            cols.update(_tokenize(table, spec, tokenizer, max_length, task))
        cols["label"] = table.column("label")
        out[split] = pa.table(cols)
    _check_disjoint(out, task)
    counts = {s: t.num_rows for s, t in out.items()}
    class_counts = {s: np.bincount(t.column("label").to_numpy(), minlength=spec["num_classes"]).tolist() for s, t in out.items()}
    meta = {
        "task": task,
        "kind": kind,
        "num_classes": spec["num_classes"],
        "metric": spec["metric"],
        "label_names": spec.get("label_names") or [str(i) for i in range(spec["num_classes"])],
        "counts": counts,
        "class_counts": class_counts,
        "input_shape": shape if kind == "image" else [max_length],
        **({"pixel_stats": stats} if kind == "image" else {}),
        "columns": {c: str(out["train"].schema.field(c).type) for c in out["train"].column_names},
    }
    return Prepared(out, meta)


def _with_label(table: pa.Table, spec: dict[str, Any], labels: np.ndarray, split: str) -> pa.Table:
    """Inputs + integer labels + an id (the source's own, else source split and row number)."""
    table = table.select([c for c in table.column_names if c in spec["inputs"] or c == "id"])
    if "id" not in table.column_names:
        table = table.append_column("id", pa.array([f"{split}:{i}" for i in range(table.num_rows)]))
    else:
        table = table.set_column(table.column_names.index("id"), "id", table.column("id").cast(pa.string()))
    return table.append_column("label", pa.array(labels, pa.int64()))


def _check_disjoint(tables: dict[str, pa.Table], task: str) -> None:
    """No example id in two splits (ids of builtin rows are derived from their content)."""
    ids = {split: set(t.column("id").to_pylist()) for split, t in tables.items()}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        overlap = ids[a] & ids[b]
        if overlap:
            raise AuxselError(f"task {task}: {len(overlap)} examples are in both {a} and {b}")


def content_hash(tables: dict[str, pa.Table]) -> str:
    """Hash of the prepared rows themselves (not of the Parquet bytes, which depend on writer versions)."""
    digest = hashlib.sha256()
    for split in SPLITS:
        digest.update(split.encode())
        for batch in tables[split].to_batches():
            for column in batch.columns:
                for buf in column.buffers():
                    if buf is not None:
                        digest.update(buf)
    return digest.hexdigest()
