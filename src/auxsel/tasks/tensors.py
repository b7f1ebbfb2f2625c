"""The in-memory form of a prepared task: tensors per split, nothing else.

The data layer fills these from Parquet; the models, the training loop and the methods read only
this. It is a plain container: no file paths, no tokenisation, no knowledge of where data came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from auxsel.errors import AuxselError

METRICS = ("accuracy", "macro_f1")
KINDS = ("image", "text", "hidden", "pooled")
# "hidden" / "pooled": text whose frozen encoder bottom was computed once (auxsel.features)
INPUT_KEYS = {"image": ("image",), "text": ("input_ids", "attention_mask"), "hidden": ("hidden", "attention_mask"),
              "pooled": ("pooled",)}


@dataclass
class TaskData:
    """One classification task.

    Attributes:
        name: task name (as in params.yaml).
        num_classes: labels are ints in [0, num_classes).
        metric: "accuracy" or "macro_f1"; the number reported and used for early stopping.
        kind: "image" (inputs {"image": uint8 [N, 36, 36]}), "text"
            (inputs {"input_ids": int [N, L], "attention_mask": int [N, L]}), "hidden" (a frozen
            encoder bottom's output: {"hidden": float [N, L, H], "attention_mask": int [N, L]}) or
            "pooled" ({"pooled": float [N, H]}, every encoder layer frozen).
        splits: split name ("train", "dev", "test") -> {input tensors..., "label": int64 [N]}.
            Auxiliary tasks need only "train"; the target needs "train", "dev" and "test".
    """

    name: str
    num_classes: int
    metric: str = "accuracy"
    kind: str = "image"
    splits: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise AuxselError(f"task {self.name!r}: unknown metric {self.metric!r} (one of {', '.join(METRICS)})")
        if self.kind not in KINDS:
            raise AuxselError(f"task {self.name!r}: unknown kind {self.kind!r} (one of {', '.join(KINDS)})")
        for split, cols in self.splits.items():
            if "label" not in cols:
                raise AuxselError(f"task {self.name!r}, split {split!r}: no 'label' tensor")
            missing = [k for k in INPUT_KEYS[self.kind] if k not in cols]
            if missing:
                raise AuxselError(f"task {self.name!r}, split {split!r}: missing input tensor(s) {missing}")
            n = len(cols["label"])
            bad = [k for k, v in cols.items() if len(v) != n]
            if bad:
                raise AuxselError(f"task {self.name!r}, split {split!r}: tensors {bad} do not have {n} rows like 'label'")

    def size(self, split: str) -> int:
        """Number of examples in `split` (0 when the split is absent)."""
        return len(self.splits[split]["label"]) if split in self.splits else 0

    def require(self, split: str) -> dict[str, torch.Tensor]:
        """The split's tensors; AuxselError naming the task if it is missing or empty."""
        if self.size(split) == 0:
            raise AuxselError(f"task {self.name!r}: split {split!r} is missing or empty")
        return self.splits[split]

    def inputs(self, split: str, index: torch.Tensor | slice | None = None) -> dict[str, torch.Tensor]:
        """Input tensors of `split` (optionally rows `index`), without the label."""
        cols = self.require(split)
        sel = slice(None) if index is None else index
        return {k: cols[k][sel] for k in INPUT_KEYS[self.kind]}

    def rows(self, split: str, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """All tensors of `split` (inputs and label) at rows `index`."""
        return {k: v[index] for k, v in self.require(split).items()}

    def labels(self, split: str, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        sel = slice(None) if index is None else index
        return self.require(split)["label"][sel]
