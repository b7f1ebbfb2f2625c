"""Selection from the screening runs: results/selection.parquet + results/selection.json.

Reads only dev metrics (baseline and screening summaries) - the dev holdout when
train.dev_holdout > 0 - never a test split.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pyarrow as pa

from auxsel import artifacts, dev_sampling
from auxsel.errors import AuxselError
from auxsel.report.tables import format_screen, power_sentence
from auxsel.select import COLUMNS, Rule, gain_stats, power_summary, summarise
from auxsel.params import NULL
from auxsel.runs import HOLDOUT_FILE, read_holdout
from auxsel.seeding import derive_seed
from stages import _common


def _summary(folder) -> dict:
    """A run's summary.json, once its folder checks out against its manifest."""
    if not folder.is_dir():
        raise AuxselError(f"select: {folder} is missing; run the baseline and screen stages first")
    return json.loads((_common.verified(folder) / "summary.json").read_text())


def _metric(summary: dict, split: str, metric: str, where: str) -> float:
    try:
        return summary["metrics"][split][metric]
    except (KeyError, TypeError):
        raise AuxselError(f"select: {where}/summary.json has no {split} {metric}; rerun that job "
                          f"(it predates train.dev_holdout or was damaged)") from None


def _holdout(folder) -> dict:
    if not (folder / HOLDOUT_FILE).exists():
        raise AuxselError(f"select: {folder} has no {HOLDOUT_FILE} (the run predates it); rerun that job, or set "
                          f"select.dev_variance: false to judge by the seed-to-seed variance alone")
    return read_holdout(folder)


def shared_variances(params: dict, meta: dict, candidates: list[str]) -> tuple[dict, dict, dict]:
    """Per candidate, the dev-example variance of its mean gain over single-task and over the null,
    and the null's own over single-task (auxsel.dev_sampling): the bootstrap replicates are seeded
    by (global seed, "select", target), so a rerun gives the same numbers."""
    target = params["target"]
    folder = {"single": _common.RESULTS / "baseline" / target}
    folder.update({aux: _common.RESULTS / "screen" / aux for aux in [*candidates, NULL]})
    answers = {name: {s: _holdout(f / f"seed-{s}") for s in params["seeds"]} for name, f in folder.items()}
    weights = dev_sampling.example_weights(int(meta["counts"]["dev"]), derive_seed(params["seed"], "select", target))

    def shared(name: str, ref: str) -> float:
        return dev_sampling.shared_variance(dev_sampling.gain_covariance(answers, name, ref, weights, meta["metric"],
                                                                         int(meta["num_classes"])))

    over_single = {aux: shared(aux, "single") for aux in candidates}
    over_null = {aux: shared(aux, NULL) for aux in candidates}
    return over_single, over_null, {NULL: shared(NULL, "single")}


def decide(params: dict, candidates: list[str]) -> tuple[list[dict], dict, list]:
    """The rule applied to the finished baseline and screening runs of `candidates` (and the null):
    the selection table's rows, what selection.json records besides them, and the files read (for
    the provenance). bench/bench_oracle.py calls it on a sub-pool, so the oracle judges the same
    decision the stage makes."""
    target = params["target"]
    meta = json.loads((_common.PREPARED / target / "meta.json").read_text())
    metric = meta["metric"]
    # the default floor of a gain's standard deviation: one dev example's worth of the metric
    held = params["train"].get("dev_holdout", 0.0)
    floor = 1.0 / max(int(round(int(meta["counts"]["dev"]) * (held or 1.0))), 1)
    # the gains that decide are read on the dev holdout (train.dev_holdout): the half of dev that
    # neither fitted αVIL's coefficients nor chose the best epoch
    split = "holdout" if params["train"].get("dev_holdout", 0.0) > 0 else "dev"
    base = {s: _summary(_common.RESULTS / "baseline" / target / f"seed-{s}") for s in params["seeds"]}
    dev_base = {s: _metric(b, split, metric, str(_common.RESULTS / "baseline" / target / f"seed-{s}")) for s, b in base.items()}
    dev, weight = {}, {}
    inputs = []
    for aux in [*candidates, NULL]:
        dev[aux], weight[aux] = {}, {}
        for s in params["seeds"]:
            folder = _common.RESULTS / "screen" / aux / f"seed-{s}"
            summary = _summary(folder)
            inputs.append(folder / "summary.json")
            dev[aux][s] = _metric(summary, split, metric, str(_common.RESULTS / "screen" / aux / f"seed-{s}"))
            weight[aux][s] = summary["final_weights"][aux]
    null_dev, null_weight = dev.pop(NULL), weight.pop(NULL)
    rule = Rule(**params["select"])
    if rule.sd_floor is not None:
        floor = rule.sd_floor
    null_w = sum(null_weight.values()) / len(null_weight)
    # the dev examples' shared variance: measured whenever the runs kept their holdout answers (the
    # table shows it), in the test only with select.dev_variance, which then requires it
    answer_files = [_common.RESULTS / kind / name / f"seed-{s}" / HOLDOUT_FILE for s in params["seeds"]
                    for kind, name in [("baseline", target), *(("screen", a) for a in [*candidates, NULL])]]
    shared, null_shared, null_own = {}, {}, {}
    if split == "holdout" and (rule.dev_variance or all(f.exists() for f in answer_files)):
        shared, null_shared, null_own = shared_variances(params, meta, candidates)
        inputs += answer_files
    rows = summarise(dev_base, dev, weight, rule, sd_floor=floor, null_dev=null_dev, null_weight=null_w,
                     shared=shared, null_shared=null_shared)
    # what the multitask machinery gives by itself: the null candidate's gain over single-task
    null = gain_stats(dev_base, {NULL: null_dev}, dataclasses.replace(rule, variance="candidate"), floor, null_own)[NULL]
    typical = sum(null_shared.values()) / len(null_shared) if null_shared else math.nan
    power = power_summary(null_dev if null_dev else dev_base, dev, rule, floor, rule.detect_gain, rule.power, typical)
    selected = [r["aux"] for r in rows if r["selected"]]
    decision = {
        "target": target,
        "metric": metric,
        "split": split,
        "rule": params["select"],
        "test": {"kind": "one-sided t, Holm across candidates", "level": rule.level, "variance": rule.variance,
                 "sd_floor": floor, "dev_variance": rule.dev_variance,
                 "bootstrap_replicates": dev_sampling.REPLICATES if shared else 0},
        "baseline_dev": {str(s): v for s, v in dev_base.items()},
        "selected": selected,
        "weights": {r["aux"]: r["weight_mean"] for r in rows if r["selected"]},
        "candidates": rows,
        "power": power,
        "null": {"dev": {str(k): v for k, v in null_dev.items()}, "weight": {str(k): v for k, v in null_weight.items()},
                 "weight_mean": null_w, **null},
    }
    return rows, decision, inputs


def main() -> None:
    args = _common.parser(__doc__).parse_args()
    params = _common.load_params(args.params)
    rows, decision, inputs = decide(params, params["candidates"])
    prov = artifacts.Provenance("select", {"select": params["select"], "target": params["target"],
                                           "candidates": params["candidates"], "seeds": params["seeds"]}, inputs)
    out = _common.RESULTS
    out.mkdir(parents=True, exist_ok=True)
    artifacts.write_parquet(pa.table({c: [r[c] for r in rows] for c in COLUMNS}), out / "selection.parquet")
    artifacts.write_json(decision, out / "selection.json")
    # last: the sha256s of the other two, which every reader checks (stages._common.verified_selection)
    prov.write(out, "selection.provenance.json",
               outputs={n: artifacts.file_sha256(out / n) for n in ("selection.json", "selection.parquet")})
    print(format_screen(rows, decision["metric"], Rule(**params["select"]).confidence))
    print(power_sentence(decision["power"]))


if __name__ == "__main__":
    _common.run(main)
