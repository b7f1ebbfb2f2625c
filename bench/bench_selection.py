"""Does the selection decide right on every pool? The whole pipeline (`snakemake --cores N`) on the
four pool/target pairs of bench_ranking.py, each in a fresh temp project, checked against its
controls:

- the positive control (more data of the target's own task) is kept;
- the shuffled-labels control is dropped (the null candidate is never a candidate: it is the
  reference every candidate must beat);
- the final the report recommends reaches the best of single, uniform_all and avil_all minus one
  seed-σ of that best method (target test metric, mean over seeds). The recommendation
  (auxsel.recommend) is `fixed` - the kept candidates at their screened weights - unless another
  trained final beats it on the dev holdout (paired over seeds, Holm at select.level);
  fixed's own result is shown beside it.

    python bench/bench_selection.py [--pairs a b c d] [--seeds 0 1 2] [--frozen-encoder] [--cores 2]
    python bench/bench_selection.py --pairs d --frozen-encoder --avil '{"merge_backtrack": 8}' --results selection_back

Text pairs run at bench_ranking's scaled text params (fine-tuned top layers, 6 epochs) or, with
--frozen-encoder, in the frozen-encoder screening mode. Results: bench/results/selection.{md,json}
(pairs are merged into what is there, keyed as in bench_ranking: c, c-frozen, ...); with --avil, a
variant of the params' avil section, to --results <name>.{md,json}.
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

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_args import (add_pair_args, add_variant_args, apply_variant, check_variant, reuse_map,  # noqa: E402
                        variant_command)
from bench_ranking import PAIRS, pair_params  # noqa: E402
from bench_text_pipeline import make_project, snakemake  # noqa: E402

FINALS = ["single", "uniform_all", "avil_all", "fixed", "avil"]


def run_pair(pair: str, seeds: list[int], frozen: bool, cores: int, text_epochs: int, reuse: Path | None,
             args: argparse.Namespace) -> dict:
    params = apply_variant(pair_params(pair, seeds, text_epochs, frozen), args)
    params["final"]["methods"] = list(FINALS)
    if reuse is not None:  # a finished project of exactly these params (e.g. bench/default_run.py's for pair a)
        project = reuse
        if yaml.safe_load((project / "params.yaml").read_text()) != params:
            raise SystemExit(f"--reuse {pair}={project}: its params.yaml is not this pair's params")
        run = json.loads((project / "results/selection.provenance.json").read_text())
        wall, jobs = None, {"reused": str(project), "selection_written": run.get("end", "")}
    else:
        project = Path(tempfile.mkdtemp(prefix=f"auxsel-selection-{pair}-")) / "p"
        raw = ROOT / "data" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        make_project(project, raw, yaml.safe_dump(params, sort_keys=False))
        wall, jobs = snakemake(project, cores)
    sel = json.loads((project / "results/selection.json").read_text())
    report = json.loads((project / "results/report/metrics.json").read_text())
    return {"params_seeds": seeds, "wall_seconds": wall, "jobs": jobs, "selection": sel, "report": report,
            "project": str(project), "fit_health": fit_health(project)}


def fit_health(project: Path) -> dict:
    """αVIL's share fits in every screen and final of a finished project: how many, how many
    stopped without converging, how many the merge guard kept out of training or shortened (docs/methods.md,
    "The merge guard"); the report's warnings name each of them."""
    import pyarrow.parquet as pq

    from auxsel.report.tables import first_row_per_epoch, merge_outcome

    out = {}
    for stage in ("screen", "final"):
        fits = unconverged = guarded = shortened = 0
        for path in sorted((project / "results" / stage).glob("*/seed-*/weights.parquet")):
            for r in first_row_per_epoch(pq.read_table(path).to_pylist()).values():
                if r.get("fit_converged") is None:
                    continue
                fits += 1
                unconverged += not r["fit_converged"]
                outcome = merge_outcome(r)
                guarded += outcome == "own"
                shortened += outcome == "shortened"
        out[stage] = {"fits": fits, "unconverged": unconverged, "guarded": guarded, "shortened": shortened}
    return out


def checks(pair: str, res: dict) -> dict:
    spec = PAIRS[pair.split("-")[0]]
    sel, test = res["selection"], res["report"]["test"]
    kept = set(sel["selected"])
    refs = {m: test[m] for m in ("single", "uniform_all", "avil_all") if m in test}
    best = max(refs, key=lambda m: refs[m]["mean"])
    bar = refs[best]["mean"] - refs[best]["std"]
    fixed = test["fixed"]["mean"]
    # the final the report recommends (auxsel.recommend: fixed unless another final beats it on the
    # dev holdout); a project whose report predates the recommendation is judged by fixed
    method = (res["report"].get("recommended") or {}).get("method") or "fixed"
    return {
        "positive_kept": spec["positive"] in kept,
        "shuffled_dropped": spec["shuffled"] not in kept,
        "selected_reaches_best": test[method]["mean"] >= bar - 1e-12,
        "best_reference": best, "bar": bar, "fixed": fixed, "recommended": method,
        "recommended_test": test[method]["mean"],
    }


def cpu_model() -> str:
    """The CPU the runs trained on: results differ between CPU vendors (bench/README.md §9)."""
    from default_run import machine

    return machine()["cpu"]


def power_row(power: dict | None) -> list[str]:
    """The selection's own power statement (auxsel.select: the gain its test keeps with probability
    `power` at these seeds, and the seeds a `detect`-sized gain needs) as a table row."""
    if not power or not math.isfinite(power.get("detectable_gain") or math.inf):
        return []
    need = power.get("seeds_for_detect")
    return [f"| (not a check) power at {power['seeds']} seeds: the gain kept with probability {power['power']:.2g} "
            f"(a +{power['detect']:.3f} gain needs {need if need else 'more than the search covers'} seeds) | "
            f"{power['detectable_gain']:+.4f} |"]


def render(path: Path, results: str) -> dict[str, bool]:
    """bench/results/<results>.md from the saved JSON: every pair measured so far, and the checks."""
    saved = json.loads(path.read_text())
    passed = {k: all(v for k, v in r["checks"].items() if isinstance(v, bool)) for k, r in saved["pairs"].items()}
    head = (f"Generated by bench/bench_selection.py; {saved['machine']}. Every pair: the whole pipeline "
            "(`snakemake`) in a fresh project.\n\n| pair | all checks |\n|---|---|\n"
            + "".join(f"| {k} | {'pass' if v else 'FAIL'} |\n" for k, v in sorted(passed.items())) + "\n")
    (ROOT / f"bench/results/{results}.md").write_text(head + table(saved["pairs"]))
    return passed


def table(results: dict) -> str:
    lines = []
    for key, r in sorted(results.items()):
        sel, test, c = r["selection"], r["report"]["test"], r["checks"]
        lines += [f"### ({key}) {r['name']} — seeds {r['params_seeds']}", "",
                  f"`{r['command']}` — {r['date']}" + (f", {r['cpu']}" if r.get("cpu") else "")
                  + (f", {r['wall_seconds'] / 60:.1f} min wall" if r['wall_seconds'] is not None else
                     f" (results of the finished project {r['project']})"), "",
                  f"Null candidate's gain over single-task ({sel['split']}): {sel['null']['gain_mean']:+.4f}.", "",
                  "| candidate | weight | gain over single | Holm p | gain over null | Holm p | decision |",
                  "|---|---|---|---|---|---|---|"]
        for row in sel["candidates"]:
            decision = "**keep**" if row["selected"] else "drop"
            lines.append(f"| {row['aux']} | {row['weight_mean']:.3f} | {row['gain_mean']:+.4f} | {row['p_holm']:.3f} | "
                         f"{row['null_gain_mean']:+.4f} | {row['null_p_holm']:.3f} | {decision} |")
        lines += ["", "| final | test mean ± std |", "|---|---|"]
        for m, t in test.items():
            lines.append(f"| {m} | {t['mean']:.4f} ± {t['std']:.4f} |")
        if r.get("fit_health"):
            h = r["fit_health"]
            lines += ["", "αVIL share fits (one per epoch of every αVIL run): " + "; ".join(
                f"{stage}s {v['fits']} (stopped without converging: {v['unconverged']}; kept out of training by "
                f"the merge guard: {v['guarded']}; shortened by it: {v.get('shortened', 0)})" for stage, v in h.items()) + "."]
        lines += ["", "| check | result |", "|---|---|",
                  f"| positive control ({PAIRS[key.split('-')[0]]['positive']}) kept | {'pass' if c['positive_kept'] else 'FAIL'} |",
                  f"| shuffled labels dropped | {'pass' if c['shuffled_dropped'] else 'FAIL'} |",
                  f"| recommended final ({c.get('recommended', 'fixed')}) {c.get('recommended_test', c['fixed']):.4f} ≥ best of "
                  f"single/uniform_all/avil_all ({c['best_reference']}) − 1 σ = {c['bar']:.4f} | "
                  f"{'pass' if c['selected_reaches_best'] else 'FAIL'} |",
                  f"| (not a check) fixed, the selection's own final: {c['fixed']:.4f} ≥ the same bar | "
                  f"{'yes' if c['fixed'] >= c['bar'] - 1e-12 else 'no'} |"] + power_row(sel.get("power")) + [""]
        rec = r["report"].get("recommended")
        if rec:
            lines[-1:-1] = ["", f"Recommended final: **{rec['method']}** — {rec['reason']}."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pair_args(ap)
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default: params.yaml's seeds")
    add_variant_args(ap, "selection")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite bench/results/<results>.md from its JSON (every pair measured so far); run nothing")
    args = ap.parse_args()
    check_variant(args, "selection")
    if args.render_only:
        passed = render(ROOT / f"bench/results/{args.results}.json", args.results)
        print(f"overall: {sum(passed.values())}/{len(passed)} pairs pass all checks")
        return
    reuse = reuse_map(args)
    seeds = args.seeds or yaml.safe_load((ROOT / "params.yaml").read_text())["seeds"]
    path = ROOT / f"bench/results/{args.results}.json"
    done = {}
    for pair in args.pairs:
        frozen = args.frozen_encoder and PAIRS[pair].get("text")
        key = f"{pair}-frozen" if frozen else pair
        res = run_pair(pair, seeds, bool(frozen), args.cores, args.text_epochs, reuse.get(pair), args)
        res.update(name=PAIRS[pair]["name"] + (" (frozen-encoder mode)" if frozen else ""),
                   date=f"{datetime.now():%Y-%m-%d %H:%M}", cpu=cpu_model(),
                   command=f"python bench/bench_selection.py --pairs {pair}" + (" --frozen-encoder" if frozen else "")
                           + (f" --seeds {' '.join(map(str, seeds))}" if args.seeds else "")
                           + (f" --reuse {pair}=<finished project>" if pair in reuse else "")
                           + variant_command(args, "selection"))
        res["checks"] = checks(key, res)
        done[key] = res
        print(table({key: res}), flush=True)
    saved = json.loads(path.read_text()) if path.exists() else {"pairs": {}}
    saved["pairs"].update(done)
    import torch

    saved["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    path.write_text(json.dumps(saved, indent=1))
    passed = render(path, args.results)
    print(f"overall: {sum(passed.values())}/{len(passed)} pairs pass all checks")


if __name__ == "__main__":
    main()
