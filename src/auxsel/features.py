"""The frozen bottom of a text encoder, computed once per example and kept as an artifact.

With `model.freeze_layers = k > 0` every training step used to recompute the embeddings and the
k frozen layers for every example, every epoch, in every job, though their output depends on the
example alone (frozen modules run in eval mode: no dropout). This module computes that output once
per task and split and stores it; training then runs only the trainable top (the remaining
layers, pooling, the MLP and the heads) and gives the same numbers as the live path.

A cache folder holds `<split>.safetensors` (float32 `hidden` [N, L, H] + uint8 `attention_mask`
[N, L], trimmed to the split's longest example; or `pooled` [N, H] when every layer is frozen),
and `meta.json` with the **key** it was computed for: encoder name and weight hash, k, max_length
and the prepared data's content hash. `load` refuses a cache whose key differs from the one
the caller expects, so a stale cache can never be read silently. With k = 0 (or an encoder
without a split bottom/top path) the folder holds only `meta.json` with mode "none" and training
reads the prepared tokens as before.

float32 is kept (not float16/bfloat16): the cached path must equal the live path to float
tolerance, and the scaled text pool's cache is small (see README: size on disk and in RAM).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from auxsel.artifacts import file_sha256
from auxsel.errors import AuxselError
from auxsel.tasks.tensors import TaskData

FORMAT = 1
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "tf_model.h5")


@functools.lru_cache(maxsize=8)
def model_fingerprint(name_or_path: str) -> str:
    """sha256 of the encoder's weight file when it is a local folder, else the hub name itself
    (pin a revision in the name for a hub model)."""
    folder = Path(name_or_path)
    if folder.is_dir():
        for name in WEIGHT_FILES:
            path = folder / name
            if path.is_file():
                return f"sha256:{file_sha256(path)}"
        raise AuxselError(f"{folder}: no encoder weight file ({', '.join(WEIGHT_FILES)})")
    return f"name:{name_or_path}"


def mode_of(encoder: Any) -> str:
    """"none" (nothing frozen to cache), "hidden" (cache the bottom's token states) or "pooled"
    (every layer frozen: cache the pooled sentence embedding)."""
    if not getattr(encoder, "freeze_layers", 0) or not encoder.splittable:
        return "none"
    return "pooled" if encoder.fully_frozen else "hidden"


def cache_key(model_name: str, model_hash: str, freeze_layers: int, max_length: int, data_hash: str,
              mode: str) -> dict[str, Any]:
    return {"format": FORMAT, "model": model_name, "model_hash": model_hash, "freeze_layers": int(freeze_layers),
            "max_length": int(max_length), "data_hash": data_hash, "mode": mode}


@torch.no_grad()
def compute(encoder: Any, task: TaskData, split: str, batch_size: int = 128,
            device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The frozen bottom's output for every example of `task`'s `split`, on the CPU."""
    device = torch.device(device)
    encoder.to(device).eval()
    cols = task.require(split)
    ids, mask = cols["input_ids"], cols["attention_mask"]
    used = int(mask.any(0).nonzero().max()) + 1 if mask.any() else 1
    ids, mask = ids[:, :used], mask[:, :used]
    mode = mode_of(encoder)
    if mode == "none":
        raise AuxselError(f"task {task.name!r}: the encoder has no frozen bottom to cache")
    outs = []
    for start in range(0, len(ids), batch_size):
        b_ids = ids[start : start + batch_size].to(device)
        b_mask = mask[start : start + batch_size].to(device)
        outs.append(encoder.bottom(b_ids, b_mask).float().cpu())
    values = torch.cat(outs)
    if mode == "pooled":
        return {"pooled": values.contiguous()}
    return {"hidden": values.contiguous(), "attention_mask": mask.to(torch.uint8).contiguous()}


def write(folder: Path, tensors: dict[str, dict[str, torch.Tensor]], key: dict[str, Any], task: str) -> dict[str, Any]:
    """Write `<split>.safetensors` + meta.json into `folder` (the caller makes it atomic). With no
    tensors (mode "none") only meta.json: training then reads the prepared data."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    info = {}
    for split, cols in tensors.items():
        save_file(cols, str(folder / f"{split}.safetensors"))
        info[split] = {name: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")} for name, t in cols.items()}
    ram = sum(t.numel() * t.element_size() for cols in tensors.values() for t in cols.values())
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
    for split in sorted(tensors):
        digest.update(file_sha256(folder / f"{split}.safetensors").encode())
    meta = {"task": task, "key": key, "splits": info, "bytes_in_ram": ram, "content_hash": digest.hexdigest(),
            "bytes_on_disk": sum((folder / f"{s}.safetensors").stat().st_size for s in tensors)}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return meta


def read_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "meta.json"
    if not path.is_file():
        raise AuxselError(f"{folder}: no feature cache (no meta.json); run the features stage")
    try:
        meta = json.loads(path.read_text())
        meta["key"]["mode"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AuxselError(f"{path}: unreadable feature cache ({type(exc).__name__}); rerun the features stage") from exc
    return meta


def check_key(folder: Path, meta: dict[str, Any], expected: dict[str, Any]) -> None:
    """A cache is read only for the key it was computed for (None in `expected`: not checked)."""
    got = meta["key"]
    diff = sorted(k for k in set(got) | set(expected) if expected.get(k, 0) is not None and got.get(k) != expected.get(k))
    if diff:
        detail = "; ".join(f"{k}: cache {got.get(k)!r}, expected {expected.get(k)!r}" for k in diff)
        raise AuxselError(f"{folder}: stale feature cache ({detail}); rerun the features stage")


def load(folder: Path, task: TaskData, expected: dict[str, Any]) -> TaskData:
    """`task` with its text inputs replaced by the cached bottom outputs (labels kept); `task`
    itself when the cache is mode "none"."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = read_meta(folder)
    check_key(folder, meta, expected)
    mode = meta["key"]["mode"]
    if mode == "none":
        return task
    splits = {}
    for split, cols in task.splits.items():
        path = folder / f"{split}.safetensors"
        try:
            cached = load_file(str(path))
        except Exception as exc:  # missing, truncated or foreign file
            raise AuxselError(f"{path}: unreadable feature cache ({type(exc).__name__}); rerun the features stage") from exc
        n = len(cols["label"])
        lengths = {name: len(t) for name, t in cached.items()}
        if any(v != n for v in lengths.values()):
            raise AuxselError(f"{path}: {lengths} rows for {n} examples of task {task.name!r}; rerun the features stage")
        if mode == "hidden":
            cached["attention_mask"] = cached["attention_mask"].to(cols["attention_mask"].dtype)
        splits[split] = {**cached, "label": cols["label"]}
    return TaskData(name=task.name, num_classes=task.num_classes, metric=task.metric, kind=mode, splits=splits)
