"""Prepared Parquet (the prepare stage's output folder) -> TaskData tensors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from auxsel.errors import AuxselError
from auxsel.tasks.tensors import TaskData

INPUTS = {"image": ("image",), "text": ("input_ids", "attention_mask")}


def _fixed(column, shape: list[int], dtype) -> torch.Tensor:
    flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return torch.from_numpy(np.ascontiguousarray(flat.astype(dtype, copy=True).reshape(-1, *shape)))


def load_task(folder: Path, splits: tuple[str, ...] = ("train", "dev", "test")) -> TaskData:
    """Read a prepared task. Auxiliaries need only ("train",); the target needs all three."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise AuxselError(f"{folder}: not a prepared task (no meta.json); run the prepare stage")
    meta = json.loads(meta_path.read_text())
    kind = meta["kind"]
    data = {}
    for split in splits:
        path = folder / f"{split}.parquet"
        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as exc:
            raise AuxselError(f"{path}: unreadable Parquet ({exc})".splitlines()[0]) from exc
        cols = {}
        for name in INPUTS[kind]:
            if name not in table.column_names:
                raise AuxselError(f"{path}: task {meta['task']}: column '{name}' missing")
            shape = meta["input_shape"]
            dtype = np.uint8 if kind == "image" else np.int64
            cols[name] = _fixed(table.column(name), shape, dtype)
        cols["label"] = torch.from_numpy(table.column("label").to_numpy().astype(np.int64))
        data[split] = cols
    return TaskData(name=meta["task"], num_classes=meta["num_classes"], metric=meta["metric"], kind=kind, splits=data)
