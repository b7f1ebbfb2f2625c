"""The report's numbers as plain rows: screening decision, final comparison, weight bands,
provenance per stage, and the wide per-epoch tables for `dvc plots`.

Everything here takes rows already read from the artifacts (the stage knows the file layout, the
library does not) and returns rows, so the HTML page, the terminal table, the DVC metrics and the
tests all read the same numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np


def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else math.nan


def final_table(metric_rows: list[dict[str, Any]], metric: str, split: str = "test") -> list[dict[str, Any]]:
    """Per final method: mean, std (ddof=1) and n of the target's `split` metric over seeds; the best
    mean (ties included) marked. Methods keep their first-seen order; `values` lists each seed's value."""
    by_method: dict[str, dict[int, float]] = {}
    aux: dict[str, str] = {}
    for r in metric_rows:
        if r["split"] == split and r["metric"] == metric:
            by_method.setdefault(r["method"], {})[r["seed"]] = r["value"]
            aux[r["method"]] = r["auxiliaries"]
    rows = []
    for method, per_seed in by_method.items():
        seeds = sorted(per_seed)
        v = np.array([per_seed[s] for s in seeds], dtype=float)
        rows.append({
            "method": method,
            "auxiliaries": aux[method],
            "n_seeds": len(v),
            "mean": float(v.mean()),
            "std": _std(v),
            "seeds": seeds,
            "values": [float(x) for x in v],
        })
    best = max((r["mean"] for r in rows), default=None)
    for r in rows:
        r["best"] = r["mean"] == best
    return rows


def format_final(rows: list[dict[str, Any]], metric: str) -> str:
    head = f"{'method':<18} {'test ' + metric:>20}  seeds  auxiliaries"
    lines = [head, "-" * len(head)]
    for r in rows:
        mark = " *" if r["best"] else "  "
        lines.append(f"{r['method']:<18} {r['mean']:>10.4f} ± {r['std']:<6.4f}{mark} {r['n_seeds']:>5}  {r['auxiliaries'] or '-'}")
    return "\n".join(lines)


def format_screen(candidates: list[dict[str, Any]], metric: str, confidence: float) -> str:
    """The selection decision, one line per candidate (selection.parquet's columns)."""
    ci = f"{confidence:.0%} interval"
    head = (f"{'rank':>4}  {'candidate':<16} {'weight':>13}  {'dev ' + metric + ' gain':>20}  {ci:>19}  {'Holm p':>6}"
            f"  {'over null':>9}  {'Holm p':>6}  decision")
    lines = [head, "-" * len(head)]
    for r in candidates:
        lines.append(
            f"{r['rank']:>4}  {r['aux']:<16} {r['weight_mean']:>6.3f} ± {r['weight_std']:<5.3f} {r['gain_mean']:>+12.4f}"
            f"  [{r['gain_ci_low']:+.4f}, {r['gain_ci_high']:+.4f}]  {r.get('p_holm', math.nan):>6.3f}"
            f"  {r.get('null_gain_mean', math.nan):>+9.4f}  {r.get('null_p_holm', math.nan):>6.3f}"
            f"  {'KEEP' if r['selected'] else 'drop'}: {r['reason']}"
        )
    return "\n".join(lines)


def bands(rows: Iterable[dict[str, Any]], key: str = "run") -> dict[str, dict[str, dict[str, list[float]]]]:
    """Weight rows (`key`, seed, epoch, task, weight) -> {run: {task: band}} with, per epoch, the mean,
    min and max over seeds and the number of seeds. Runs and tasks keep their first-seen order."""
    acc: dict[str, dict[str, dict[int, list[float]]]] = {}
    for r in rows:
        acc.setdefault(r[key], {}).setdefault(r["task"], defaultdict(list))[int(r["epoch"])].append(float(r["weight"]))
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for run, tasks in acc.items():
        out[run] = {}
        for task, by_epoch in tasks.items():
            epochs = sorted(by_epoch)
            out[run][task] = {
                "epoch": epochs,
                "mean": [float(np.mean(by_epoch[e])) for e in epochs],
                "low": [float(np.min(by_epoch[e])) for e in epochs],
                "high": [float(np.max(by_epoch[e])) for e in epochs],
                "n": [len(by_epoch[e]) for e in epochs],
            }
    return out


def learned(rows: list[dict[str, Any]]) -> bool:
    """Whether a run's weights change during training (αVIL, DIW) rather than stay fixed."""
    first: dict[tuple[Any, str], float] = {}
    for r in rows:
        k = (r.get("seed"), r["task"])
        w = float(r["weight"])
        if k in first and not math.isclose(first[k], w, rel_tol=0, abs_tol=1e-12):
            return True
        first.setdefault(k, w)
    return False


def wide(series: dict[str, dict[int, float]], index: str = "epoch") -> list[dict[str, Any]]:
    """{column: {epoch: value}} -> one row per epoch with one column per series (blank where a
    series has no value), the shape `dvc plots` draws as one line per column."""
    epochs = sorted({e for s in series.values() for e in s})
    return [{index: e, **{name: s.get(e, "") for name, s in series.items()}} for e in epochs]


def mean_by_epoch(rows: Iterable[dict[str, Any]], column: str, value: str) -> dict[str, dict[int, float]]:
    """Long rows -> {rows[column]: {epoch: mean over seeds of rows[value]}}."""
    acc: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        acc.setdefault(r[column], defaultdict(list))[int(r["epoch"])].append(float(r[value]))
    return {k: {e: float(np.mean(v)) for e, v in sorted(d.items())} for k, d in acc.items()}


def provenance_table(records: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """(where, provenance.json) pairs -> per-stage rows (jobs, total and longest wall time, the
    distinct params hashes, commits, devices, hosts), the package versions seen (with how many
    jobs ran each one) and the per-job rows, in first-seen stage order."""
    stages: dict[str, dict[str, Any]] = {}
    packages: dict[str, dict[str, int]] = {}
    jobs = []
    for where, rec in records:
        stage = rec.get("stage", "?")
        s = stages.setdefault(stage, {"stage": stage, "jobs": 0, "wall_seconds": 0.0, "max_wall_seconds": 0.0,
                                      "params_hashes": [], "commits": [], "devices": [], "hosts": [],
                                      "start": None, "end": None})
        wall = float(rec.get("wall_seconds") or 0.0)
        s["jobs"] += 1
        s["wall_seconds"] += wall
        s["max_wall_seconds"] = max(s["max_wall_seconds"], wall)
        git = rec.get("git") or {}
        commit = git.get("commit")
        commit = "none (not a git checkout)" if commit is None else commit + (" (dirty)" if git.get("dirty") else "")
        for k, v in (("params_hashes", rec.get("params_hash")), ("commits", commit), ("devices", rec.get("device")), ("hosts", rec.get("host"))):
            if v is not None and v not in s[k]:
                s[k].append(v)
        if rec.get("start") and (s["start"] is None or rec["start"] < s["start"]):
            s["start"] = rec["start"]
        if rec.get("end") and (s["end"] is None or rec["end"] > s["end"]):
            s["end"] = rec["end"]
        for name, version in (rec.get("packages") or {}).items():
            v = "not installed" if version is None else str(version)
            packages.setdefault(name, {})
            packages[name][v] = packages[name].get(v, 0) + 1
        jobs.append({"where": where, "stage": stage, "wall_seconds": wall, "params_hash": rec.get("params_hash"),
                     "device": rec.get("device"), "start": rec.get("start"), "end": rec.get("end")})
    return {"stages": list(stages.values()), "packages": packages, "jobs": jobs}


def power_sentence(power: dict[str, Any] | None) -> str:
    """selection.json's power statement in one sentence (auxsel.select.power_summary): what a
    candidate's true gain must be for these seeds to keep it, and the seeds a `detect` gain needs."""
    if not power or not math.isfinite(power.get("detectable_gain") or math.inf):
        return "Power: fewer than 2 seeds or no spread to judge from; nothing can be said about what these seeds detect."
    need = power.get("seeds_for_detect")
    need_txt = f"{need} seeds" if need is not None else "more than 1,000 seeds"
    dev = power.get("dev_se")
    if need is None and power.get("dev_in_test") and dev is not None and math.isfinite(dev) and dev > 0:
        need_txt = "a larger dev split: no number of seeds gets past the dev examples' share below"
    return (f"Power: the candidates' gains spread {power['sd']:.4f} per seed (pooled sd); at {power['seeds']} seeds a lone "
            f"helper among {power['candidates']} candidates is kept with {power['power']:.0%} probability only if its true gain "
            f"over the reference is at least {power['detectable_gain']:+.4f} (one-sided t at {power['alpha']:.3g}, Holm's first "
            f"step); a gain of {power['detect']:+.4f} would need {need_txt}." + _dev_clause(power))


def _dev_clause(power: dict[str, Any]) -> str:
    """What the dev examples, shared by every seed, add to a mean gain's uncertainty."""
    dev = power.get("dev_se")
    if dev is None or not math.isfinite(dev):
        return ""
    used = ("the test includes it (select.dev_variance)" if power.get("dev_in_test")
            else "the test leaves it out (select.dev_variance: false)")
    return (f" The dev examples, which every seed shares, add a standard error of {dev:.4f} to a typical mean gain over "
            f"the null that no number of seeds shrinks; {used}.")


def first_row_per_epoch(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """A run's weights rows (one per task and epoch) reduced to the first row of each epoch: the
    share fit's columns repeat on every task's row of an epoch, so one row stands for the fit."""
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        out.setdefault(int(r["epoch"]), r)
    return out


def merge_outcome(row: dict[str, Any]) -> str:
    """How one epoch's share fit entered training, from its weights row: "own" (the merge guard
    trained on from the target's own step), "shortened" (the mix halved, `merge_scale` in (0, 1)),
    "blown" (the mix as fitted although its untempered fitting loss was over twice both the epoch
    start's and the target step's: a long step whose logits the profiled temperature cooled), or
    "fit". The one reading of a row that the report and the benches share."""
    if row.get("merged_from") == "own":
        return "own"
    if 0 < (row.get("merge_scale") or 1.0) < 1:
        return "shortened"
    merged = row.get("dev_loss_merged", row.get("dev_loss_fit"))  # rows before dev_loss_merged: the fit's
    if merged is not None and "dev_loss_before" in row and "dev_loss_own" in row \
            and merged > 2 * max(row["dev_loss_before"], row["dev_loss_own"]):
        return "blown"
    return "fit"


def shortened_merges(runs: dict[str, list[dict[str, Any]]]) -> str | None:
    """One sentence on how often the merge guard shortened a fitted mix along its direction
    (`merge_scale` strictly between 0 and 1, `avil.merge_backtrack`) and to what lengths; None when
    no fit was shortened. Why not one line each: on the frozen-encoder text pairs nearly every
    run's first fit is shortened (bench/README.md §7); it is routine, not an alarm, but the report
    should still say that training went on from a shorter step than the fit chose."""
    fits, scales = 0, []
    for rows in runs.values():
        for r in first_row_per_epoch(rows).values():
            if r.get("merge_scale") is None:
                continue
            fits += 1
            if merge_outcome(r) == "shortened":
                scales.append(r["merge_scale"])
    if not scales:
        return None
    lo, hi = min(scales), max(scales)
    span = f"1/{round(1 / hi)}" if lo == hi else f"1/{round(1 / hi)} to 1/{round(1 / lo)}"
    return (f"The merge guard shortened {len(scales)} of {fits} αVIL share fits' mixes along their own direction "
            f"(to {span} of the fitted step) because the untempered model scored worse on the fitting batch than "
            f"both the epoch's start and the target's own step")


def fit_warnings(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One line per αVIL share fit that stopped without converging (`fit_converged` false) or whose
    mix the merge guard kept out of training (`merged_from` "own"), with the fitted step, its
    temperature and the dev loss the next epoch started from.

    Why: a fit that runs out of evaluations can merge a step far outside what the epoch's updates
    support (measured: 36 times the target's update at temperature 21.7, after which the run sat at
    chance for 24 epochs) and nothing else in the report says so. `runs` maps a run's name (e.g.
    "final/avil_all seed 4") to its weights.parquet rows; runs without fit columns give nothing."""
    out = []
    for name, rows in runs.items():
        per_epoch = first_row_per_epoch(rows)
        for epoch, r in sorted(per_epoch.items()):
            unconverged = "fit_converged" in r and r["fit_converged"] is not None and not bool(r["fit_converged"])
            guarded = merge_outcome(r) == "own"
            if not (unconverged or guarded):
                continue
            fitted = (f"step {r.get('step', math.nan):.2f}× the target's update at temperature "
                      f"{r.get('temperature', math.nan):.2f}")
            if unconverged:
                line = (f"{name}, epoch {epoch}: share fit stopped on {r.get('fit_stop', '?')} after {r.get('fit_evals', '?')} "
                        f"evaluations (largest gradient entry {r.get('fit_grad_max', math.nan):.2g}); fitted {fitted}")
            else:
                line = f"{name}, epoch {epoch}: share fit converged at {fitted}"
            if guarded:
                if all(k in r for k in ("dev_loss_fit", "dev_loss_own", "dev_loss_before")):
                    why = (f"the fitted mix's untempered loss {r['dev_loss_fit']:.3g} was above both the epoch's start "
                           f"{r['dev_loss_before']:.3g} and the target's own step {r['dev_loss_own']:.3g}")
                else:
                    why = "the fitted mix's untempered loss was above both the epoch's start and the target's own step"
                line += f"; the merge guard trained on from the target's own step ({why})"
            nxt = per_epoch.get(epoch + 1)
            if nxt is not None and "dev_loss_before" in nxt:
                line += f"; the next epoch's fit started at dev loss {nxt['dev_loss_before']:.3g} (this one at {r['dev_loss_before']:.3g})"
            out.append(line)
    return out
