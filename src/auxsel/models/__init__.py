"""Shared encoder + one linear head per task; build from a spec, save/load with safetensors.

A model spec is a plain dict (what params.yaml holds):
    {"kind": "lenet", "hidden": 50, "channels": [10, 20], "normalize": true,  # vision; the shape
     "input_shape": [36, 36]}                                                   # comes from the data
    {"kind": "hf", "name_or_path": "<dir or hub name>", "freeze_layers": 0,  # text
     "mlp_layers": 0, "mlp_width": 256}
The spec and the heads ({task: num_classes}) are stored in the safetensors metadata, so
`load_model(path)` rebuilds the same architecture and returns identical logits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from auxsel.errors import AuxselError
from auxsel.models.text import TextEncoder
from auxsel.models.vision import LeNetTrunk, ResNetTrunk

__all__ = ["MultiTaskModel", "build_model", "save_model", "load_model", "LeNetTrunk", "ResNetTrunk", "TextEncoder"]

_SPEC_KEYS = {"lenet": {"kind", "hidden", "channels", "normalize", "input_shape", "pixel_mean", "pixel_std"},
              "resnet": {"kind", "widths", "blocks", "normalize", "input_shape", "pixel_mean", "pixel_std"}, "hf": {"kind", "name_or_path", "freeze_layers", "mlp_layers", "mlp_width"}}


class MultiTaskModel(nn.Module):
    """`trunk` shared by all tasks; `heads[task]` a Linear(trunk.out_dim, num_classes).

    Parameters are registered trunk first, then heads in the order given, so a flat parameter
    vector is [shared..., head_1..., head_2...].
    """

    def __init__(self, trunk: nn.Module, heads: dict[str, int], spec: dict[str, Any]) -> None:
        super().__init__()
        for name in heads:
            if not name or "." in name:
                raise AuxselError(f"task name {name!r} cannot name a model head (empty or contains '.')")
        self.trunk = trunk
        self.heads = nn.ModuleDict({t: nn.Linear(trunk.out_dim, int(c)) for t, c in heads.items()})
        self.spec = dict(spec)
        self.head_classes = {t: int(c) for t, c in heads.items()}

    def forward(self, batch: dict[str, torch.Tensor], task: str) -> torch.Tensor:
        return self.heads[task](self.trunk(batch))


def _check_spec(spec: dict[str, Any]) -> str:
    kind = spec.get("kind")
    if kind not in _SPEC_KEYS:
        raise AuxselError(f"model spec: unknown kind {kind!r} (one of {', '.join(_SPEC_KEYS)})")
    extra = set(spec) - _SPEC_KEYS[kind]
    if extra:
        raise AuxselError(f"model spec ({kind}): unknown key(s) {sorted(extra)}")
    if kind == "hf" and not spec.get("name_or_path"):
        raise AuxselError("model spec (hf): 'name_or_path' is required")
    return kind


def pixel_stats(spec: dict[str, Any]) -> dict[str, Any]:
    """The trunk's standardisation: `normalize` true or "mnist" -> MNIST's; "target" -> the
    `pixel_mean`/`pixel_std` the stage put in the spec (the target's training split; saved with
    the model); false or "none" -> none."""
    how = spec.get("normalize", True)
    if how in (True, "mnist"):
        return {"mean": LeNetTrunk.MNIST[0], "std": LeNetTrunk.MNIST[1]}
    if how == "target":
        if "pixel_mean" not in spec or "pixel_std" not in spec:
            raise AuxselError("model spec: normalize 'target' needs pixel_mean and pixel_std (the target's training-split statistics)")
        return {"mean": tuple(spec["pixel_mean"]), "std": tuple(spec["pixel_std"])}
    return {"mean": None, "std": None}


def build_model(spec: dict[str, Any], heads: dict[str, int], seed: int = 0, pretrained: bool = True) -> MultiTaskModel:
    """A fresh MultiTaskModel; random parts (LeNet, heads) are initialised from `seed`."""
    kind = _check_spec(spec)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        if kind == "lenet":
            trunk: nn.Module = LeNetTrunk(hidden=int(spec.get("hidden", 50)), channels=tuple(spec.get("channels", (10, 20))),
                                          input_shape=tuple(spec.get("input_shape", (36, 36))), **pixel_stats(spec))
        elif kind == "resnet":
            trunk = ResNetTrunk(input_shape=tuple(spec.get("input_shape", (32, 32, 3))), widths=tuple(spec.get("widths", (16, 32, 64, 128))),
                                blocks=int(spec.get("blocks", 1)), **pixel_stats(spec))
        else:
            trunk = TextEncoder(str(spec["name_or_path"]), int(spec.get("freeze_layers", 0)), pretrained=pretrained,
                                mlp_layers=int(spec.get("mlp_layers", 0)), mlp_width=int(spec.get("mlp_width", 256)))
        return MultiTaskModel(trunk, heads, spec)
    finally:
        torch.random.set_rng_state(gen_state)


def save_model(model: MultiTaskModel, path: str | Path) -> None:
    """Write all weights + spec + heads as one safetensors file (written to `path` as given)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"auxsel": json.dumps({"spec": model.spec, "heads": model.head_classes, "dtype": str(next(model.parameters()).dtype)})}
    save_file(state, str(path), metadata=meta)


def load_model(path: str | Path, name_or_path: str | None = None, device: str = "cpu") -> MultiTaskModel:
    """Rebuild the model saved by `save_model`. For text models the encoder's config is read from
    the spec's `name_or_path` (or `name_or_path` if given, e.g. when the folder moved); the weights
    always come from `path`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if "auxsel" not in meta:
        raise AuxselError(f"{path}: not an auxsel model (no 'auxsel' metadata)")
    info = json.loads(meta["auxsel"])
    spec = dict(info["spec"])
    if name_or_path is not None and spec.get("kind") == "hf":
        spec["name_or_path"] = name_or_path
    model = build_model(spec, info["heads"], seed=0, pretrained=False)
    model.spec = dict(info["spec"])
    dtype = getattr(torch, info.get("dtype", "torch.float32").removeprefix("torch."))
    model.to(dtype)
    state = load_file(str(path), device=device)
    model.load_state_dict(state, strict=True)
    return model.to(device)
