"""What a pool looks like before any training: rows, classes, inputs, and the mistakes that would
waste a screening run or bias it.

A candidate that holds examples of the target's dev or test split leaks them into training: its
screening gain is partly the target's own evaluation data, and the selection would keep it for
that. Such overlap is found by the content of the inputs (image pixels; text, whitespace and case
folded), not by ids, which differ between sources of the same example. The same function runs in
`auxsel check` (on tasks prepared in memory) and in every screening job (on the prepared files),
so the pipeline never trains on a leak the check would have named.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa

from auxsel.errors import AuxselError

SMALL = 10  # a candidate with 10x fewer training rows than the target gets a warning


def row_keys(table: pa.Table, inputs: Iterable[str]) -> set[bytes]:
    """A digest of each row's input content: the image bytes, or the text columns joined."""
    if "image" in table.column_names:
        flat = table.column("image").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        rows = flat.reshape(table.num_rows, -1)
        return {hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in rows}
    cols = [c for c in inputs if c in table.column_names]
    if not cols:
        return set()
    texts = zip(*[table.column(c).to_pylist() for c in cols])
    return {hashlib.blake2b("\x1f".join(" ".join(str(t).split()).lower() for t in row).encode(), digest_size=16).digest()
            for row in texts}


def leaks(target: str, target_tables: dict[str, pa.Table], target_inputs: Iterable[str],
          candidate: str, candidate_train: pa.Table, candidate_inputs: Iterable[str]) -> list[str]:
    """One line per target split (dev, test) that shares examples with the candidate's training rows."""
    cand = row_keys(candidate_train, candidate_inputs)
    out = []
    for split in ("dev", "test"):
        if split in target_tables:
            shared = len(row_keys(target_tables[split], target_inputs) & cand)
            if shared:
                out.append(f"candidate {candidate}: {shared} of its training examples are in the target {target}'s "
                           f"{split} split (same inputs); remove them from one of the two tasks")
    return out


def check_no_leak(target: str, target_tables: dict[str, pa.Table], target_inputs: Iterable[str],
                  candidate: str, candidate_train: pa.Table, candidate_inputs: Iterable[str]) -> None:
    found = leaks(target, target_tables, target_inputs, candidate, candidate_train, candidate_inputs)
    if found:
        raise AuxselError(found[0])


def summary(task: str, meta: dict[str, Any], tables: dict[str, pa.Table]) -> dict[str, Any]:
    """Rows per split, class balance, input shape or token lengths, and per-task warnings."""
    counts = {s: int(n) for s, n in meta["counts"].items()}
    classes = meta["class_counts"]
    warnings = []
    for split, per_class in classes.items():
        missing = [meta["label_names"][i] for i, n in enumerate(per_class) if n == 0]
        if missing:
            warnings.append(f"{task}: class {', '.join(map(str, missing[:5]))} missing from {split}")
    train = np.asarray(classes["train"], dtype=float)
    share = train / max(train.sum(), 1.0)
    if meta["kind"] == "image":
        inputs = f"image {_shape(meta['input_shape'])}"
    else:
        lengths = np.asarray([sum(m) for m in tables["train"].column("attention_mask").to_pylist()]) \
            if "attention_mask" in tables["train"].column_names else np.zeros(1)
        cut = float(np.mean(lengths >= meta["input_shape"][0]))
        inputs = f"tokens mean {lengths.mean():.0f}, max {lengths.max():.0f} of {meta['input_shape'][0]}"
        if cut > 0.25:
            warnings.append(f"{task}: {cut:.0%} of training texts are cut at max_length {meta['input_shape'][0]}")
    return {"task": task, "kind": meta["kind"], "counts": counts, "num_classes": meta["num_classes"],
            "balance": (float(share.min()), float(share.max())), "inputs": inputs, "warnings": warnings}


def _shape(shape: list[int]) -> str:
    return "x".join(map(str, shape))


def shape_mismatch(target: str, shapes: dict[str, list[int]]) -> str | None:
    """One line for the first image task whose shape is not the target's, else None."""
    for name, shape in shapes.items():
        if list(shape) != list(shapes[target]):
            return (f"task {name}: images are {_shape(shape)}, the target {target}'s {_shape(shapes[target])}; "
                    "one shared trunk takes one input shape: resize or pad one of them")
    return None


def pool_warnings(target: str, summaries: dict[str, dict[str, Any]]) -> list[str]:
    """Across tasks: a candidate much smaller than the target, inputs of another shape."""
    out = []
    t = summaries[target]
    for name, s in summaries.items():
        if name == target:
            continue
        if s["counts"]["train"] * SMALL < t["counts"]["train"]:
            out.append(f"{name}: {s['counts']['train']} training rows, under 1/{SMALL} of the target's {t['counts']['train']}")
    return out


def table(rows: list[dict[str, Any]], roles: dict[str, str]) -> str:
    """The summaries as a fixed-width table for a terminal."""
    head = ["task", "role", "train", "dev", "test", "classes", "balance (train)", "inputs"]
    body = [[r["task"], roles[r["task"]], *(str(r["counts"].get(s, 0)) for s in ("train", "dev", "test")),
             str(r["num_classes"]), f"{r['balance'][0]:.2f}-{r['balance'][1]:.2f}", r["inputs"]] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *(fmt(b) for b in body)])
