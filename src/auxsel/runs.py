"""A training result as long-format tables (one row per fact), so runs concatenate.

Column sets are fixed here, in one place, and checked by the tests against DESIGN.md's minimum.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from auxsel.artifacts import write_parquet

METRIC_COLUMNS = ["stage", "method", "target", "auxiliaries", "seed", "split", "metric", "value"]
HISTORY_COLUMNS = ["epoch", "task", "split", "loss", "metric", "seconds"]
WEIGHT_COLUMNS = ["epoch", "task", "weight", "alpha"]
HOLDOUT_COLUMNS = ["row", "label", "pred"]
HOLDOUT_FILE = "holdout_predictions.parquet"


def metric_rows(result: Any, stage: str, method: str, target: str, auxiliaries: list[str], seed: int) -> list[dict[str, Any]]:
    aux = ",".join(auxiliaries)
    return [
        {"stage": stage, "method": method, "target": target, "auxiliaries": aux, "seed": seed, "split": split, "metric": name, "value": float(value)}
        for split, values in result.metrics.items()
        for name, value in values.items()
    ]


def _table(rows: list[dict[str, Any]], first: list[str]) -> pa.Table:
    """Rows -> table with the required columns first; extra diagnostic columns kept after them."""
    extra = sorted({k for r in rows for k in r} - set(first))
    cols = first + extra
    return pa.table({c: [r.get(c) for r in rows] for c in cols})


def write_result(folder: Path, result: Any, stage: str, method: str, target: str, auxiliaries: list[str], seed: int) -> list[dict[str, Any]]:
    """metrics / history / weights Parquet files into `folder`; returns the metric rows."""
    rows = metric_rows(result, stage, method, target, auxiliaries, seed)
    write_parquet(_table(rows, METRIC_COLUMNS), folder / "metrics.parquet")
    write_parquet(_table(result.history, HISTORY_COLUMNS), folder / "history.parquet")
    if result.weights:
        write_parquet(_table(result.weights, WEIGHT_COLUMNS), folder / "weights.parquet")
    if getattr(result, "holdout", None) is not None:
        write_parquet(pa.table({c: pa.array(result.holdout[c].numpy().astype("int32")) for c in HOLDOUT_COLUMNS}),
                      folder / HOLDOUT_FILE)
    return rows


def read_holdout(folder: Path) -> dict[str, Any]:
    """A run's holdout answers as numpy arrays {"row", "label", "pred"} (see write_result)."""
    import pyarrow.parquet as pq

    table = pq.read_table(folder / HOLDOUT_FILE)
    return {c: table.column(c).to_numpy() for c in HOLDOUT_COLUMNS}
