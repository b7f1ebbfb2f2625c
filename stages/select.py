"""Selection from the screening runs: results/selection.parquet + results/selection.json.

Reads only dev metrics (baseline and screening summaries); never a test split.
"""

from __future__ import annotations

import json

import pyarrow as pa

from auxsel import artifacts
from auxsel.errors import AuxselError
from auxsel.report.tables import format_screen
from auxsel.select import COLUMNS, Rule, summarise
from stages import _common


def _summary(path) -> dict:
    if not path.is_file():
        raise AuxselError(f"select: {path} is missing; run the baseline and screen stages first")
    return json.loads(path.read_text())


def main() -> None:
    args = _common.parser(__doc__).parse_args()
    params = _common.load_params(args.params)
    target = params["target"]
    metric = json.loads((_common.PREPARED / target / "meta.json").read_text())["metric"]
    base = {s: _summary(_common.RESULTS / "baseline" / target / f"seed-{s}" / "summary.json") for s in params["seeds"]}
    dev_base = {s: b["metrics"]["dev"][metric] for s, b in base.items()}
    dev, weight = {}, {}
    inputs = []
    for aux in params["candidates"]:
        dev[aux], weight[aux] = {}, {}
        for s in params["seeds"]:
            path = _common.RESULTS / "screen" / aux / f"seed-{s}" / "summary.json"
            summary = _summary(path)
            inputs.append(path)
            dev[aux][s] = summary["metrics"]["dev"][metric]
            weight[aux][s] = summary["final_weights"][aux]
    rule = Rule(**params["select"])
    rows = summarise(dev_base, dev, weight, rule)
    prov = artifacts.Provenance("select", {"select": params["select"], "target": target, "candidates": params["candidates"], "seeds": params["seeds"]}, inputs)
    selected = [r["aux"] for r in rows if r["selected"]]
    decision = {
        "target": target,
        "metric": metric,
        "split": "dev",
        "rule": params["select"],
        "baseline_dev": {str(s): v for s, v in dev_base.items()},
        "selected": selected,
        "weights": {r["aux"]: r["weight_mean"] for r in rows if r["selected"]},
        "candidates": rows,
    }
    out = _common.RESULTS
    out.mkdir(parents=True, exist_ok=True)
    artifacts.write_parquet(pa.table({c: [r[c] for r in rows] for c in COLUMNS}), out / "selection.parquet")
    prov.write(out, "selection.provenance.json")
    artifacts.write_json(decision, out / "selection.json")  # last: its presence means the others are there
    print(format_screen(rows, metric, rule.confidence))


if __name__ == "__main__":
    _common.run(main)
