"""Report: results/report/ — index.html (self-contained), metrics.json (`dvc metrics`), per-epoch
CSVs (`dvc plots`), figures/*.png (Snakemake's report) and provenance.json; prints the decision
and the final comparison."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from auxsel import artifacts
from auxsel.errors import AuxselError
from auxsel.recommend import recommend
from auxsel.report import (bands, final_table, fit_warnings, format_final, format_screen, learned, mean_by_epoch, plots,
                           provenance_table, shortened_merges, wide)
from auxsel.report.html import Figure, page
from auxsel.params import NULL
from stages import _common

METHOD_NAMES = {"avil_literal": "αVIL (literal)", "avil": "αVIL", "diw": "DIW", "uniform": "uniform", "fixed": "fixed"}


def method_name(method: str) -> str:
    """`avil_all` -> αVIL, `diw_all` -> DIW, `avil_literal_all` -> αVIL (literal)."""
    return next((v for k, v in METHOD_NAMES.items() if method.startswith(k)), method)


def _need(path: Path, stage: str) -> Path:
    if not path.is_file():
        raise AuxselError(f"report: {path} is missing; run the {stage} stage first")
    return path


def _rows(path: Path, stage: str) -> list[dict[str, Any]]:
    return pq.read_table(_need(path, stage)).to_pylist()


def main() -> None:
    args = _common.parser(__doc__).parse_args()
    params = _common.load_params(args.params)
    target, seeds, candidates, methods = params["target"], params["seeds"], params["candidates"], params["final"]["methods"]
    res = _common.RESULTS
    # everything read below as its job wrote it (a damaged one is removed, naming its job)
    _common.verified_selection()
    for folder in ([res / "baseline" / target / f"seed-{s}" for s in seeds]
                   + [res / "screen" / a / f"seed-{s}" for a in [*candidates, NULL] for s in seeds]
                   + [res / "final" / m / f"seed-{s}" for m in methods for s in seeds]):
        _common.verified(folder)
    sel = json.loads(_need(res / "selection.json", "select").read_text())
    cands = _rows(res / "selection.parquet", "select")
    metric, rule = sel["metric"], sel["rule"]
    prov = artifacts.Provenance("report", {"target": target, "candidates": candidates, "seeds": seeds, "final": params["final"]},
                                [res / "selection.json", res / "selection.parquet"], device="cpu")

    # screening: each candidate's weight trajectory in its pairwise run
    screen_rows = []
    fits: dict[str, list[dict[str, Any]]] = {}  # every run's weight rows, for the fits that did not converge
    for aux in [*candidates, NULL]:
        for s in seeds:
            rows = _rows(res / "screen" / aux / f"seed-{s}" / "weights.parquet", "screen")
            fits[f"screen/{aux} seed {s}"] = rows
            if aux != NULL:
                screen_rows += [dict(r, run=aux, seed=s) for r in rows if r["task"] in (target, aux)]
    screen_bands = bands(screen_rows)
    colors = plots.task_colors([target, *candidates], target)
    screen_panel = {aux: screen_bands[aux][aux] for aux in candidates if aux in screen_bands.get(aux, {})}
    if candidates and target in screen_bands.get(candidates[0], {}):
        screen_panel = {target: screen_bands[candidates[0]][target], **screen_panel}
    screen_name = method_name(params["screen"]["method"])

    # final runs: test metric per method, dev curves, learned weight trajectories
    metric_rows, dev_rows, final_weights, fixed = [], [], {}, []
    for m in methods:
        wrows = []
        for s in seeds:
            d = res / "final" / m / f"seed-{s}"
            metric_rows += [dict(r, method=m) for r in _rows(d / "metrics.parquet", "final")]  # keyed by folder
            dev_rows += [dict(r, method=m, seed=s) for r in _rows(d / "history.parquet", "final") if r["split"] == "dev" and r["task"] == target]
            if (d / "weights.parquet").is_file():
                rows = pq.read_table(d / "weights.parquet").to_pylist()
                fits[f"final/{m} seed {s}"] = rows
                wrows += [dict(r, run=m, seed=s) for r in rows]
        if wrows and learned(wrows):
            final_weights[m] = bands(wrows)[m]
        else:
            fixed.append(m)
    table = final_table(metric_rows, metric)
    missing = [m for m in methods if m not in {r["method"] for r in table}]
    if missing:
        raise AuxselError(f"report: no test {metric} in results/final/{missing[0]}/*/metrics.parquet")
    order = {m: i for i, m in enumerate(methods)}
    table.sort(key=lambda r: order[r["method"]])
    # the paired differences' sd is floored at one holdout example's worth of the metric (as select's)
    summary = json.loads((res / "final" / methods[0] / f"seed-{seeds[0]}" / "summary.json").read_text())
    holdout_n = (summary.get("dev_split") or {}).get("holdout") or 0
    rec = recommend(metric_rows, metric, params["select"]["level"], sd_floor=1.0 / holdout_n if holdout_n else 0.0)

    records = []
    for task in [target, *candidates]:
        records += _provenance(_common.PREPARED / task / "provenance.json")
    for s in seeds:
        records += _provenance(res / "baseline" / target / f"seed-{s}" / "provenance.json")
    for aux in [*candidates, NULL]:
        for s in seeds:
            records += _provenance(res / "screen" / aux / f"seed-{s}" / "provenance.json")
    records += _provenance(res / "selection.provenance.json")
    for m in methods:
        for s in seeds:
            records += _provenance(res / "final" / m / f"seed-{s}" / "provenance.json")
    prov_table = provenance_table(records)

    shown = ", ".join(final_weights) or "none"
    note = (f"Weight trajectories are drawn for the final runs whose weights change during training ({shown}); "
            f"the others keep fixed weights: {', '.join(fixed) or 'none'}.")
    shortened = shortened_merges(fits)
    if shortened:
        note += f" {shortened}."
    warnings = fit_warnings(fits)
    if warnings:
        note += " αVIL share fits that did not converge or that the merge guard kept out of training: " + " | ".join(warnings) + "."
    figs = {
        "gains": Figure("fig-gains", "Screening gains", f"Mean paired gain of the target's dev {metric} per candidate with its "
                        f"{rule['confidence']:.0%} interval; green: selected, grey: dropped; labels give the weight (mean ± std).",
                        plots.gains_forest(cands, metric, rule["confidence"], rule["min_gain"], target), "figures/gains.png"),
        "screen_weights": Figure("fig-screen-weights", f"{screen_name} weights during screening",
                                 f"Each candidate's {screen_name} weight per epoch in its pairwise run with {target}.",
                                 plots.trajectories({f"{screen_name} screening: each candidate with {target}": screen_panel}, colors, target,
                                                    f"{screen_name} screening weights"), "figures/screen_weights.png"),
        "final_test": Figure("fig-final-test", "Final comparison", f"Test {metric} of {target} per final method.",
                             plots.final_comparison(table, metric, target), "figures/final_test.png"),
        "final_weights": Figure("fig-final-weights", "Weights during the final runs",
                                "One panel per final method with learned weights, one line per task.",
                                plots.trajectories({f"{m} ({method_name(m)})": p for m, p in final_weights.items()},
                                                   colors, target, "Final-run weights"), "figures/final_weights.png"),
    }
    report_meta = dict(prov.record)
    text = page(sel, cands, table, [figs["gains"], figs["screen_weights"]], [figs["final_test"], figs["final_weights"]], note,
                prov_table, artifacts.params_hash(params), report_meta, rec)

    screen_means = mean_by_epoch([r for r in screen_rows if r["task"] == r["run"]], "run", "weight")
    dev_means = mean_by_epoch(dev_rows, "method", "metric")
    out = _common.RESULTS / "report"
    with artifacts.atomic_dir(out) as tmp:
        tmp.chmod(0o755)  # mkdtemp makes it private; the report is meant to be read
        (tmp / "figures").mkdir()
        for f in figs.values():
            (tmp / f.file).write_bytes(f.png)
        (tmp / "index.html").write_text(text, encoding="utf-8")
        artifacts.write_json(headline(sel, cands, table, rec), tmp / "metrics.json")  # strict JSON: non-finite -> null
        _csv(wide({a: screen_means.get(a, {}) for a in candidates}), tmp / "screen_weights.csv", ["epoch", *candidates])
        _csv(wide({m: dev_means.get(m, {}) for m in methods}), tmp / "final_dev.csv", ["epoch", *methods])
        prov.write(tmp, stages=prov_table["stages"])
    print(format_screen(cands, metric, rule["confidence"]))
    print(f"selected: {', '.join(sel['selected']) or 'none'}\n")
    print(format_final(table, metric))
    print(f"recommended final: {rec['method'] or 'none'} ({rec['reason']})")
    for w in warnings:
        print(f"warning: {w}")
    print(f"\nreport: {out / 'index.html'}")


def headline(sel: dict[str, Any], cands: list[dict[str, Any]], table: list[dict[str, Any]],
             rec: dict[str, Any]) -> dict[str, Any]:
    """metrics.json: the selected set, the target's test metric per final method, and the
    recommended final with the holdout comparison behind it (auxsel.recommend)."""
    return {
        "target": sel["target"],
        "metric": sel["metric"],
        "selected": sel["selected"],
        "n_selected": len(sel["selected"]),
        "screen": {c["aux"]: {"selected": bool(c["selected"]), "weight": c["weight_mean"], "gain": c["gain_mean"]} for c in cands},
        "test": {r["method"]: {"mean": r["mean"], "std": r["std"], "n_seeds": r["n_seeds"]} for r in table},
        "best": [r["method"] for r in table if r["best"]],
        "recommended": {"method": rec["method"], "reference": rec["reference"], "reason": rec["reason"],
                        "level": rec["level"], "split": rec["split"],
                        "test": next(({"mean": r["mean"], "std": r["std"]} for r in table if r["method"] == rec["method"]), None),
                        "holdout": {r["method"]: {k: r[k] for k in ("mean", "diff_mean", "diff_sd", "p_value", "p_holm",
                                                                    "beats_reference") if k in r} for r in rec["rows"]}},
    }


def _provenance(path: Path) -> list[tuple[str, dict[str, Any]]]:
    return [(str(path.parent if path.name == "provenance.json" else path), json.loads(path.read_text()))] if path.is_file() else []


def _csv(rows: list[dict], path: Path, fields: list[str]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    _common.run(main)
