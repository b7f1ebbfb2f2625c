"""Report: results/report/index.html and metrics.json (headline numbers for `dvc metrics`)."""

from __future__ import annotations

import html
import json

import pyarrow.parquet as pq

from auxsel import artifacts
from auxsel.report import final_table, format_final
from stages import _common


def main() -> None:
    args = _common.parser(__doc__).parse_args()
    params = _common.load_params(args.params)
    selection = json.loads((_common.RESULTS / "selection.json").read_text())
    metric = selection["metric"]
    rows = []
    for method in params["final"]["methods"]:
        for seed in params["seeds"]:
            rows += pq.read_table(_common.RESULTS / "final" / method / f"seed-{seed}" / "metrics.parquet").to_pylist()
    table = final_table(rows, metric)
    out = _common.RESULTS / "report"
    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        "target": selection["target"],
        "selected": selection["selected"],
        "test": {r["method"]: {"mean": r["mean"], "std": r["std"]} for r in table},
    }
    artifacts.write_json(metrics, out / "metrics.json")
    write_plot_data(params, out, metric)
    cand = "".join(
        f"<tr><td>{c['rank']}</td><td>{html.escape(c['aux'])}</td><td>{c['weight_mean']:.3f} ± {c['weight_std']:.3f}</td>"
        f"<td>{c['gain_mean']:+.4f}</td><td>[{c['gain_ci_low']:+.4f}, {c['gain_ci_high']:+.4f}]</td>"
        f"<td>{'kept' if c['selected'] else 'dropped'}: {html.escape(c['reason'])}</td></tr>"
        for c in selection["candidates"]
    )
    fin = "".join(
        f"<tr><td>{html.escape(r['method'])}{' (best)' if r['best'] else ''}</td><td>{r['mean']:.4f} ± {r['std']:.4f}</td>"
        f"<td>{r['n_seeds']}</td><td>{html.escape(r['auxiliaries'] or '-')}</td></tr>"
        for r in table
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>auxsel: {html.escape(selection['target'])}</title></head>
<body><h1>Auxiliary-task selection for {html.escape(selection['target'])}</h1>
<h2>Screening (dev {html.escape(metric)} gain over single-task, paired by seed)</h2>
<table border="1"><tr><th>rank</th><th>candidate</th><th>weight</th><th>gain</th><th>interval</th><th>decision</th></tr>{cand}</table>
<h2>Final runs (test {html.escape(metric)}, mean ± std over seeds)</h2>
<table border="1"><tr><th>method</th><th>test</th><th>seeds</th><th>auxiliaries</th></tr>{fin}</table>
</body></html>"""
    tmp = out / ".index.html.tmp"
    tmp.write_text(page)
    tmp.replace(out / "index.html")
    print(format_final(table, metric))


def write_plot_data(params: dict, out, metric: str) -> None:
    """Per-epoch series for `dvc plots`: screened weights per candidate, final dev curves."""
    import pyarrow.compute as pc

    rows = []
    for aux in params["candidates"]:
        for seed in params["seeds"]:
            w = pq.read_table(_common.RESULTS / "screen" / aux / f"seed-{seed}" / "weights.parquet")
            w = w.filter(pc.equal(w.column("task"), aux))
            rows += [{"epoch": e, "candidate": aux, "seed": seed, "weight": v} for e, v in zip(w.column("epoch").to_pylist(), w.column("weight").to_pylist())]
    _csv(rows, out / "screen_weights.csv")
    rows = []
    for method in params["final"]["methods"]:
        for seed in params["seeds"]:
            h = pq.read_table(_common.RESULTS / "final" / method / f"seed-{seed}" / "history.parquet").to_pylist()
            rows += [{"epoch": r["epoch"], "method": method, "seed": seed, "dev_metric": r["metric"]} for r in h if r["split"] == "dev" and r["task"] == params["target"]]
    _csv(rows, out / "final_dev.csv")


def _csv(rows: list[dict], path) -> None:
    import csv

    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["epoch"])
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


if __name__ == "__main__":
    _common.run(main)
