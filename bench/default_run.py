"""The default run as a fresh clone does it: `snakemake --cores 2` on the shipped params.yaml in a new
temp project, timed; writes its selection and final-test tables to bench/results/default_run.{md,json}
(README.md's "Results of the default run" is that file, copied by bench/update_readme.py).

    python bench/default_run.py [--cores 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_text_pipeline import make_project, snakemake  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    project = Path(tempfile.mkdtemp(prefix="auxsel-default-")) / "p"
    make_project(project, ROOT / "data" / "raw", (ROOT / "params.yaml").read_text())
    wall, jobs = snakemake(project, args.cores)
    sel = json.loads((project / "results/selection.json").read_text())
    rows = pq.read_table(project / "results/selection.parquet").to_pylist()
    report = json.loads((project / "results/report/metrics.json").read_text())
    import torch

    lines = [
        f"`snakemake --cores {args.cores}` on a fresh project with the shipped params.yaml (`python bench/default_run.py`), "
        f"{datetime.now():%Y-%m-%d %H:%M}, {platform.machine()} {os.cpu_count()}-core CPU, torch {torch.__version__}, "
        f"one thread per job: **{wall:.0f} s wall** for {sum(jobs.values())} jobs "
        f"({', '.join(f'{n} {k}' for k, n in jobs.items())}).",
        "",
        f"Selection (target `{sel['target']}`, dev {sel['metric']} gain over single-task paired by seed, "
        f"{rows[0]['n_seeds']} seeds, {sel['rule']['confidence']:.0%} interval; weight = screened αVIL weight, target = 1):",
        "",
        "| rank | candidate | weight | dev gain | interval | decision |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        decision = "**keep**" if r["selected"] else f"drop: {r['reason']}"
        lines.append(f"| {r['rank']} | {r['aux']} | {r['weight_mean']:.3f} ± {r['weight_std']:.3f} | {r['gain_mean']:+.4f} | "
                     f"[{r['gain_ci_low']:+.4f}, {r['gain_ci_high']:+.4f}] | {decision} |")
    lines += ["", f"Target test {report['metric']} of the final runs (mean ± std over seeds; selected: "
              f"{', '.join(sel['selected']) or 'none'}):", "", "| final method | test | n seeds |", "|---|---|---|"]
    for method, t in report["test"].items():
        lines.append(f"| {method} | {t['mean']:.3f} ± {t['std']:.3f} | {t['n_seeds']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench" / "results"
    (out / "default_run.md").write_text(text)
    (out / "default_run.json").write_text(json.dumps({"wall_seconds": wall, "jobs": jobs, "selection": sel,
                                                      "report": report, "project": str(project)}, indent=1))


if __name__ == "__main__":
    main()
