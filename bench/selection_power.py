"""How often does the selection keep the positive control and drop the rest, at k seeds? Measured,
not simulated: one pool's whole screening (baseline, null, every candidate) over many seeds, then
the rule (auxsel.select.summarise, as stages/select.py calls it) applied to random k-seed subsets.

    python bench/selection_power.py --pairs b c --frozen-encoder --seeds 0 1 ... 19
    python bench/selection_power.py --pairs c --frozen-encoder --reuse c=<project> --rules '[{}, {"variance": "pooled"}]'

bench/power.py answers the same question on simulated screens with one σ for every run; this one
keeps what a simulation leaves out - candidates of unequal spread, screens correlated within a seed,
a shuffled control that is not exactly useless. Subsets of k out of N seeds overlap, so the rates at
k close to N lean toward the N-seed decision; read them at k ≤ N/2.

Per pair it also writes the judging diagnostic: the correlation, over (seed, candidate), of a
screen's gain over the null on the dev holdout (what decides) and on test (1,000-2,000 examples,
the same models). Near 0, the holdout's sampling noise, not training, is what the test sees. And
the dev examples' shared variance (auxsel.dev_sampling, from the runs' holdout answers): per
candidate a seeds × seeds covariance, so each k-seed draw is judged with its own share, and the
rules can be compared with and without it (`{"dev_variance": true}`).

Results: bench/results/<--results>.{md,json} (default selection_power); pairs merge into what is there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

from bench_args import (add_pair_args, add_variant_args, apply_variant, check_variant, reuse_map,  # noqa: E402
                        variant_command)
from bench_ranking import PAIRS, pair_params  # noqa: E402
from bench_text_pipeline import make_project, snakemake  # noqa: E402

from auxsel import dev_sampling  # noqa: E402
from auxsel.params import NULL  # noqa: E402
from auxsel.seeding import derive_seed  # noqa: E402
from auxsel.select import Rule, summarise  # noqa: E402

SIZES = [3, 5, 8, 10]
RULES = [{"variance": "candidate"}, {"variance": "pooled"}, {"variance": "moderated"},
         {"variance": "moderated", "level": 0.05}, {"variance": "moderated", "level": 0.2}, {"dev_variance": True}]


def run_screens(pair: str, seeds: list[int], frozen: bool, cores: int, text_epochs: int, reuse: Path | None,
                args: argparse.Namespace) -> Path:
    """A project whose baseline, null and screens of every seed are finished (its selection too)."""
    params = apply_variant(pair_params(pair, seeds, text_epochs, frozen), args)
    if reuse is not None:
        got = yaml.safe_load((reuse / "params.yaml").read_text())
        skip = ("seeds", "final", "select")  # what the screens do not depend on (the rules are applied here)
        mine = {k: v for k, v in params.items() if k not in skip}
        if {k: v for k, v in got.items() if k not in skip} != mine:
            raise SystemExit(f"--reuse {pair}={reuse}: its params.yaml is not this pair's params")
        got["seeds"] = seeds  # more seeds: snakemake runs only the missing baseline and screens
        (reuse / "params.yaml").write_text(yaml.safe_dump(got, sort_keys=False))
        project = reuse
    else:
        project = Path(tempfile.mkdtemp(prefix=f"auxsel-power-{pair}-")) / "p"
        make_project(project, ROOT / "data" / "raw", yaml.safe_dump(params, sort_keys=False))
    snakemake(project, cores, "results/selection.json")
    return project


def project_head(project: Path) -> tuple[dict, dict, dict]:
    """A finished project's params, its target's meta.json, and what every reading of it starts
    from: target, metric, seeds, candidates, select params and the judging half's size."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    target = params["target"]
    meta = json.loads((project / f"data/prepared/{target}/meta.json").read_text())
    head = {"target": target, "metric": meta["metric"], "seeds": params["seeds"], "candidates": params["candidates"],
            "select": params["select"], "holdout_n": int(round(meta["counts"]["dev"] * params["train"]["dev_holdout"]))}
    return params, meta, head


def load_screens(project: Path) -> dict:
    """Per seed: the holdout and test metric of the baseline, the null and every candidate, and the
    candidates' screened weights."""
    params, meta, out = project_head(project)
    target, metric = out["target"], out["metric"]
    out["runs"] = {}

    def read(folder: Path) -> dict:
        return json.loads((folder / "summary.json").read_text())

    for s in params["seeds"]:
        base = read(project / f"results/baseline/{target}/seed-{s}")["metrics"]
        row = {"single": {"holdout": base["holdout"][metric], "test": base["test"][metric]}}
        for aux in [NULL, *params["candidates"]]:
            summ = read(project / f"results/screen/{aux}/seed-{s}")
            row[aux] = {"holdout": summ["metrics"]["holdout"][metric], "test": summ["metrics"]["test"][metric],
                        "weight": summ["final_weights"][aux]}
        out["runs"][str(s)] = row
    out["dev_cov"] = dev_covariances(project, params, meta)
    return out


def dev_covariances(project: Path, params: dict, meta: dict) -> dict:
    """Per candidate, the (seeds × seeds) covariance of its gains over single-task ("single") and
    over the null ("null") through the dev examples (auxsel.dev_sampling, seeded as stages/select.py
    seeds it): a k-seed subset's shared variance is the mean off-diagonal entry of its block."""
    from auxsel.runs import HOLDOUT_FILE, read_holdout

    folders = {"single": project / f"results/baseline/{params['target']}"}
    folders.update({a: project / f"results/screen/{a}" for a in [*params["candidates"], NULL]})
    answers = {}
    for name, folder in folders.items():
        for s in params["seeds"]:
            if not (folder / f"seed-{s}" / HOLDOUT_FILE).exists():
                raise SystemExit(f"{folder}/seed-{s} has no {HOLDOUT_FILE}: the project's runs predate it (screens keep "
                                 f"no model to recompute it from); run a fresh project")
            answers.setdefault(name, {})[s] = read_holdout(folder / f"seed-{s}")
    weights = dev_sampling.example_weights(int(meta["counts"]["dev"]), derive_seed(params["seed"], "select", params["target"]))

    def cov(name: str, ref: str) -> list:
        return dev_sampling.gain_covariance(answers, name, ref, weights, meta["metric"], int(meta["num_classes"])).tolist()

    return {"seeds": sorted(params["seeds"]),
            "single": {a: cov(a, "single") for a in params["candidates"]},
            "null": {a: cov(a, NULL) for a in params["candidates"]}}


def shared(screens: dict, seeds: list[int], ref: str) -> dict[str, float]:
    """Per candidate, the dev-example variance its mean gain over `ref` has on these seeds."""
    order = screens["dev_cov"]["seeds"]
    idx = [order.index(s) for s in seeds]
    return {a: dev_sampling.shared_variance(np.asarray(c), idx) for a, c in screens["dev_cov"][ref].items()}


def decide(screens: dict, seeds: list[int], rule: Rule) -> set[str]:
    """The candidates the rule keeps on these seeds (as stages/select.py decides)."""
    runs = [screens["runs"][str(s)] for s in seeds]
    base = {i: r["single"]["holdout"] for i, r in enumerate(runs)}
    dev = {a: {i: r[a]["holdout"] for i, r in enumerate(runs)} for a in screens["candidates"]}
    weight = {a: {i: r[a]["weight"] for i, r in enumerate(runs)} for a in screens["candidates"]}
    null = {i: r[NULL]["holdout"] for i, r in enumerate(runs)}
    null_w = float(np.mean([r[NULL]["weight"] for r in runs]))
    rows = summarise(base, dev, weight, rule, sd_floor=1.0 / screens["holdout_n"], null_dev=null, null_weight=null_w,
                     shared=shared(screens, seeds, "single"), null_shared=shared(screens, seeds, "null"))
    return {r["aux"] for r in rows if r["selected"]}


def reference(screens: dict) -> dict:
    """Every candidate's gain over the null on test and on the holdout over all seeds (mean, se), and
    the correlation of the two per (seed, candidate)."""
    runs = list(screens["runs"].values())
    ref, hold, test = {}, [], []
    dev_var = shared(screens, screens["seeds"], "null")
    for a in screens["candidates"]:
        t = np.array([r[a]["test"] - r[NULL]["test"] for r in runs])
        h = np.array([r[a]["holdout"] - r[NULL]["holdout"] for r in runs])
        ts = np.array([r[a]["test"] - r["single"]["test"] for r in runs])
        ref[a] = {"test_over_null": float(t.mean()), "test_over_null_se": float(t.std(ddof=1) / math.sqrt(len(t))),
                  "test_over_single": float(ts.mean()),
                  "holdout_over_null": float(h.mean()), "holdout_over_null_se": float(h.std(ddof=1) / math.sqrt(len(h))),
                  "holdout_over_null_dev_se": math.sqrt(dev_var[a])}
        hold += list(h)
        test += list(t)
    corr = float(np.corrcoef(hold, test)[0, 1])
    return {"candidates": ref, "holdout_test_corr": corr}


def resample(screens: dict, sizes: list[int], rules: list[dict], draws: int, useless: list[str], seed: int = 0) -> list[dict]:
    """P(kept) per candidate and P(any of `useless` kept) - the family-wise error - per rule and k."""
    rng = np.random.default_rng(seed)
    seeds = list(screens["seeds"])
    out = []
    for k in sizes:
        if k > len(seeds):
            continue
        subsets = [sorted(rng.choice(seeds, size=k, replace=False).tolist()) for _ in range(draws)]
        for over in rules:
            rule = Rule(**{**screens["select"], **over})
            kept = [decide(screens, sub, rule) for sub in subsets]
            out.append({"k": k, "rule": over, "draws": draws,
                        "p_kept": {a: sum(a in s for s in kept) / draws for a in screens["candidates"]},
                        "p_any_useless": sum(bool(s & set(useless)) for s in kept) / draws,
                        "mean_kept": float(np.mean([len(s) for s in kept]))})
    return out


def at_seeds(screens: dict, rules: list[dict], seeds: list[int]) -> dict[str, list[str]]:
    """What each rule keeps on exactly these seeds (e.g. the configs' default 0-4)."""
    return {rule_name(over): sorted(decide(screens, seeds, Rule(**{**screens["select"], **over}))) for over in rules}


def rule_name(over: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in over.items()) or "default"


def table(key: str, res: dict) -> str:
    spec = PAIRS[key.split("-")[0]]
    pos, shuf = spec["positive"], spec["shuffled"]
    others = [a for a in res["screens"]["candidates"] if a not in (pos, shuf)]
    ref = res["reference"]["candidates"]
    lines = [f"### ({key}) {res['name']} — {len(res['screens']['seeds'])} seeds, holdout {res['screens']['holdout_n']} examples",
             "", f"`{res['command']}` — {res['date']}", "",
             f"Gain over the null, all {len(res['screens']['seeds'])} seeds (mean ± se): the judging holdout and test "
             f"(the same models). Correlation of a screen's holdout gain and its test gain: "
             f"**{res['reference']['holdout_test_corr']:+.2f}**. The holdout's ± is the seeds' se; 'shared' is the "
             f"se its examples add, which every seed shares (auxsel.dev_sampling).", "",
             "| candidate | holdout | shared | test | test over single |", "|---|---|---|---|---|"]
    for a in [pos, shuf, *others]:
        r = ref[a]
        dev_se = r.get("holdout_over_null_dev_se")
        lines.append(f"| {a} | {r['holdout_over_null']:+.4f} ± {r['holdout_over_null_se']:.4f} | "
                     + (f"{dev_se:.4f}" if dev_se is not None else "not measured")
                     + f" | {r['test_over_null']:+.4f} ± {r['test_over_null_se']:.4f} | {r['test_over_single']:+.4f} |")
    useless = ", ".join(res["useless"]) or "none"
    lines += ["", f"P(kept) over {res['resample'][0]['draws']} random k-seed subsets; last column: P(any candidate kept "
              f"whose {len(res['screens']['seeds'])}-seed test gain over the null is ≤ 0 ({useless})) — the family-wise error:", "",
              f"| rule | k | {pos} (positive) | {shuf} (shuffled) | " + " | ".join(others) + " | mean kept | any useless kept |",
              "|---|---|---|---|" + "---|" * len(others) + "---|---|"]
    for r in sorted(res["resample"], key=lambda r: (rule_name(r["rule"]), r["k"])):
        p = r["p_kept"]
        lines.append(f"| {rule_name(r['rule'])} | {r['k']} | {p[pos]:.2f} | {p[shuf]:.2f} | "
                     + " | ".join(f"{p[a]:.2f}" for a in others) + f" | {r['mean_kept']:.2f} | {r['p_any_useless']:.2f} |")
    first = res.get("first_five")
    if first:
        seeds = res["screens"]["seeds"][:5]
        lines += ["", f"Kept on seeds {seeds} (the configs' default seeds): "
                  + "; ".join(f"{name}: {', '.join(kept) or 'nothing'}" for name, kept in first.items()) + "."]
    return "\n".join(lines) + "\n"


def saved_results(name: str) -> dict:
    """bench/results/<name>.json as far as it goes (new pairs merge into it)."""
    path = ROOT / f"bench/results/{name}.json"
    return json.loads(path.read_text()) if path.exists() else {"pairs": {}}


def screened_pairs(args: argparse.Namespace, reuse: dict[str, Path]):
    """(pair, results key, frozen, finished project) for each of --pairs, screening it if needed."""
    for pair in args.pairs:
        frozen = bool(args.frozen_encoder and PAIRS[pair].get("text"))
        key = f"{pair}-frozen" if frozen else pair
        yield pair, key, frozen, run_screens(pair, args.seeds, frozen, args.cores, args.text_epochs, reuse.get(pair), args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pair_args(ap)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(20)))
    ap.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    ap.add_argument("--rules", type=json.loads, default=RULES, help="overrides of the select section, one per rule (JSON list)")
    ap.add_argument("--draws", type=int, default=1000)
    add_variant_args(ap, "selection_power")
    args = ap.parse_args()
    check_variant(args, "selection_power")
    reuse = reuse_map(args)
    saved = saved_results(args.results)
    for pair, key, frozen, project in screened_pairs(args, reuse):
        screens = load_screens(project)
        ref = reference(screens)
        # useless: no better than the null on test over all seeds (the positive control never counts)
        useless = [a for a, r in ref["candidates"].items() if r["test_over_null"] <= 0 and a != PAIRS[pair]["positive"]]
        res = {"name": PAIRS[pair]["name"] + (" (frozen-encoder mode)" if frozen else ""),
               "date": f"{datetime.now():%Y-%m-%d %H:%M}", "project": str(project),
               "command": f"python bench/selection_power.py --pairs {pair}" + (" --frozen-encoder" if frozen else "")
                          + f" --seeds {' '.join(map(str, args.seeds))} --draws {args.draws}"
                          + (f" --rules '{json.dumps(args.rules)}'" if args.rules != RULES else "")
                          + (f" --reuse {pair}=<finished project>" if pair in reuse else "")
                          + variant_command(args, "selection_power"),
               "screens": screens, "reference": ref, "useless": useless,
               "resample": resample(screens, args.sizes, args.rules, args.draws, useless),
               "first_five": at_seeds(screens, args.rules, screens["seeds"][:5])}
        saved["pairs"][key] = res
        print(table(key, res), flush=True)
    import torch

    saved["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    write_results(saved, args.results)


def write_results(saved: dict, name: str) -> None:
    """bench/results/<name>.json and the .md its tables are rendered into."""
    (ROOT / f"bench/results/{name}.json").write_text(json.dumps(saved, indent=1))
    head = (f"Generated by bench/selection_power.py; {saved['machine']}. Each pair: the screening of many seeds "
            "(snakemake to results/selection.json), then auxsel.select's rule on random k-seed subsets of them.\n\n")
    (ROOT / f"bench/results/{name}.md").write_text(head + "\n".join(table(k, r) for k, r in sorted(saved["pairs"].items())))


if __name__ == "__main__":
    main()
