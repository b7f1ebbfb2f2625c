"""Prepared Parquet (the prepare stage's output folder) -> TaskData tensors.

Whatever is wrong with a prepared file (truncated, corrupted, a column missing or of the wrong
shape, labels out of range) is one `AuxselError` naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from auxsel.errors import AuxselError
from auxsel.tasks.tensors import TaskData

INPUTS = {"image": ("image",), "text": ("input_ids", "attention_mask")}
META_KEYS = ("task", "kind", "num_classes", "metric", "input_shape")


def _fixed(column, shape: list[int], dtype) -> torch.Tensor:
    flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return torch.from_numpy(np.ascontiguousarray(flat.astype(dtype, copy=True).reshape(-1, *shape)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _meta(folder: Path) -> dict:
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise AuxselError(f"{folder}: not a prepared task (no meta.json); run the prepare stage")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise AuxselError(f"{meta_path}: unreadable ({_first_line(exc)}); rerun the prepare stage") from exc
    missing = [k for k in META_KEYS if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise AuxselError(f"{meta_path}: missing {', '.join(missing)}; rerun the prepare stage")
    if meta["kind"] not in INPUTS:
        raise AuxselError(f"{meta_path}: unknown kind {meta['kind']!r}")
    return meta


def _split(path: Path, meta: dict, split: str) -> dict[str, torch.Tensor]:
    kind, shape = meta["kind"], meta["input_shape"]
    if not path.is_file():
        raise AuxselError(f"{path}: missing; rerun the prepare stage")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError / ... for damaged files
        raise AuxselError(f"{path}: unreadable Parquet ({_first_line(exc)}); rerun the prepare stage") from exc
    expected = (meta.get("counts") or {}).get(split)
    if expected is not None and table.num_rows != expected:
        raise AuxselError(f"{path}: {table.num_rows} rows, but meta.json says {expected}; rerun the prepare stage")
    cols = {}
    dtype = np.uint8 if kind == "image" else np.int64
    for name in (*INPUTS[kind], "label"):
        if name not in table.column_names:
            raise AuxselError(f"{path}: task {meta['task']}: column '{name}' missing")
    try:
        for name in INPUTS[kind]:
            column = table.column(name)
            if column.null_count:
                raise AuxselError(f"{path}: column '{name}' has {column.null_count} missing values")
            cols[name] = _fixed(column, shape, dtype)
        label = table.column("label")
        if label.null_count:
            raise AuxselError(f"{path}: column 'label' has {label.null_count} missing values")
        labels = label.to_numpy()
        if not np.issubdtype(labels.dtype, np.integer):
            raise AuxselError(f"{path}: column 'label' holds {labels.dtype}, not integers")
        cols["label"] = torch.from_numpy(labels.astype(np.int64))
    except AuxselError:
        raise
    except Exception as exc:  # wrong widths, types or a damaged page decode
        raise AuxselError(f"{path}: cannot read the {kind} columns as {shape} ({_first_line(exc)}); "
                          "rerun the prepare stage") from exc
    for name, tensor in cols.items():
        if len(tensor) != table.num_rows:
            raise AuxselError(f"{path}: column '{name}' holds {len(tensor)} values for {table.num_rows} rows "
                              f"(not {shape} per row)")
    bad = cols["label"][(cols["label"] < 0) | (cols["label"] >= meta["num_classes"])]
    if len(bad):
        raise AuxselError(f"{path}: labels out of range 0..{meta['num_classes'] - 1}: {sorted(set(bad.tolist()))[:5]}")
    return cols


def load_task(folder: Path, splits: tuple[str, ...] = ("train", "dev", "test")) -> TaskData:
    """Read a prepared task. Auxiliaries need only ("train",); the target needs all three."""
    folder = Path(folder)
    meta = _meta(folder)
    data = {split: _split(folder / f"{split}.parquet", meta, split) for split in splits}
    return TaskData(name=meta["task"], num_classes=meta["num_classes"], metric=meta["metric"], kind=meta["kind"], splits=data)
