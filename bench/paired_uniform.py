"""Does the αVIL screen realise what a candidate does under plain multitask training? Uniform screens
beside a finished project's αVIL screens, paired exactly as the pipeline pairs them.

    python bench/paired_uniform.py --project <finished project> --candidates subjectivity_more _null
    python bench/paired_uniform.py --project P --candidates subjectivity_more --avil '{"merge_step": "own"}' --label avil_ownstep

For each candidate and seed the project's own `training_run` trains {target, candidate} with
`uniform` weighting at the screen stage's settings and seeds (same initial weights, target batch
order and dev split as the project's baseline and αVIL screen of that seed), into
<project>/bench/uniform/<candidate>/seed-N (kept: a rerun skips finished runs). The table gives each
screen's gain over the project's single-task baseline on the holdout half of dev (what the selection
reads) and on test, for uniform and for the project's αVIL screen. With `--avil JSON --label NAME`
the screens beside the project's are αVIL ones with those `avil` overrides instead (a variant's
screens, paired the same way, under <project>/bench/NAME/). Results: bench/results/<name>.{json,md}.

Why: a selection can only keep a candidate whose screen shows its effect; when the uniform pair
gains and the αVIL screen does not, the screen, not the test, is what misses it (bench/README.md §8).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics as st
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def summary_metric(run: Path, split: str, metric: str | None = None) -> float:
    metrics = json.loads((run / "summary.json").read_text())["metrics"][split]
    return metrics[metric] if metric else next(v for k, v in metrics.items() if k != "loss")


def train_screens(project: Path, aux: str, seeds: list[int], label: str, avil: dict | None) -> None:
    """The project's own training code, run from inside it (its params, prepared data and stages)."""
    os.chdir(project)
    sys.path[:0] = [str(project / "src"), str(project)]
    from stages import _common

    params = _common.load_params(Path("params.yaml"))
    if avil is not None:
        params["avil"] = {**(params.get("avil") or {}), **avil}
    for seed in seeds:
        out = project / "bench" / label / aux / f"seed-{seed}"
        if (out / "summary.json").is_file():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        _common.training_run(params, "screen", "uniform" if avil is None else "avil", [aux], seed, out, save_model=False)
        print(f"{label} {aux} seed {seed}: test {summary_metric(out, 'test'):.4f}", flush=True)


def gains(project: Path, selection: dict, runs: dict[int, Path], split: str) -> list[float]:
    """Each run's gain over the project's single-task baseline of its seed, in the selection's metric."""
    base = project / "results" / "baseline" / selection["target"]
    metric = selection["metric"]
    return [summary_metric(run, split, metric) - summary_metric(base / f"seed-{s}", split, metric) for s, run in runs.items()]


def describe(values: list[float]) -> dict[str, float]:
    return {"mean": st.mean(values), "sd": st.stdev(values) if len(values) > 1 else 0.0, "per_seed": values}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, required=True, help="a finished pipeline project (results/selection.json)")
    ap.add_argument("--candidates", nargs="+", default=[], help="candidates to screen uniformly (`_null`: the null)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--avil", type=json.loads, help="screen with αVIL and these `avil` overrides instead of uniform")
    ap.add_argument("--label", default="uniform", help="the variant's name (runs under <project>/bench/LABEL)")
    ap.add_argument("--results", default="paired_uniform")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    project = args.project.resolve()
    if args.avil is not None and args.label == "uniform":
        raise SystemExit("--avil: name the variant with --label (its runs are kept under <project>/bench/LABEL)")
    if args.worker:
        train_screens(project, args.worker, args.seeds, args.label, args.avil)
        return
    if not args.candidates:
        raise SystemExit("--candidates: name at least one candidate of the project (or _null)")
    if not (project / "results" / "selection.json").is_file():
        raise SystemExit(f"{project}: no results/selection.json (run the pipeline there first)")
    import subprocess

    for aux in args.candidates:  # one process per candidate: the project's modules, not this checkout's
        variant = ["--label", args.label] + (["--avil", json.dumps(args.avil)] if args.avil is not None else [])
        subprocess.run([sys.executable, __file__, "--project", str(project), "--worker", aux, "--seeds",
                        *map(str, args.seeds), *variant], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    selection = json.loads((project / "results" / "selection.json").read_text())
    out: dict = {"project": str(project), "seeds": args.seeds, "candidates": {},
                 "date": f"{datetime.now():%Y-%m-%d %H:%M}", "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                 "command": f"python bench/paired_uniform.py --project <finished project> --candidates {' '.join(args.candidates)}"
                            + (f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds != [0, 1, 2, 3, 4] else "")
                            + (f" --avil '{json.dumps(args.avil)}'" if args.avil is not None else "")
                            + (f" --label {args.label}" if args.label != "uniform" else "")
                            + (f" --results {args.results}" if args.results != "paired_uniform" else "")}
    for aux in args.candidates:
        variant = {s: project / "bench" / args.label / aux / f"seed-{s}" for s in args.seeds}
        avil = {s: project / "results" / "screen" / aux / f"seed-{s}" for s in args.seeds}
        out["candidates"][aux] = {f"{m}_{split}": describe(gains(project, selection, runs, split))
                                  for m, runs in (("variant", variant), ("avil", avil)) for split in ("holdout", "test")}
    out["label"] = args.label
    lines = [f"`{out['command']}` — {out['date']}, {out['machine']}; project `{project.parent.name}/{project.name}`", "",
             "Gain over the project's single-task baseline, mean ± sd over seeds (per seed in brackets):", "",
             f"| candidate | split | {args.label} screen | αVIL screen (the project's) |", "|---|---|---|---|"]
    for aux, res in out["candidates"].items():
        for split in ("holdout", "test"):
            u, a = res[f"variant_{split}"], res[f"avil_{split}"]
            fmt = lambda d: f"{d['mean']:+.4f} ± {d['sd']:.4f} [{', '.join(f'{x:+.3f}' for x in d['per_seed'])}]"
            lines.append(f"| {aux} | {split} | {fmt(u)} | {fmt(a)} |")
    (ROOT / "bench" / "results" / f"{args.results}.json").write_text(json.dumps(out, indent=1))
    (ROOT / "bench" / "results" / f"{args.results}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
