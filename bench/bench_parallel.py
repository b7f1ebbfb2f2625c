"""Parallel screening: wall time of the screening jobs alone under `snakemake --cores 1` vs `--cores 2`.

Run in a copy of a project whose pipeline has completed (the screening outputs are overwritten;
nothing else runs: `--allowed-rules screen`). Each screening job uses `threads` torch threads
(params.yaml `threads`, 1 by default), so two jobs fill two cores without oversubscribing them:

    cp -a /path/to/finished/project /tmp/par && python bench/bench_parallel.py --project /tmp/par \\
        --aux left_more right --seeds 0 1

Writes bench/results/parallel.{json,md} (in this repository, not the project).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path


def run(project: Path, cores: int, targets: list[str]) -> float:
    cmd = ["snakemake", *targets, "--cores", str(cores), "--forcerun", "screen", "--allowed-rules", "screen"]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=project, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    done = (res.stderr + res.stdout).count("Finished jobid")
    if done < len(targets):
        raise SystemExit(f"only {done} of {len(targets)} jobs ran:\n{res.stderr[-3000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--aux", nargs="+", default=["left_more", "right"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--order", default="1,2,2,1",
                    help="core counts in the order run; each count's median is used (default 1,2,2,1 cancels drift)")
    args = ap.parse_args()
    targets = [f"results/screen/{a}/seed-{s}" for a in args.aux for s in args.seeds]
    dry = subprocess.run(["snakemake", *targets, "-n", "--cores", "2", "--forcerun", "screen", "--allowed-rules", "screen"],
                         cwd=args.project, check=True, capture_output=True, text=True).stdout
    if "screen" not in dry or f"{len(targets)}" not in dry:
        raise SystemExit(f"dry run does not show {len(targets)} screening jobs:\n{dry}")
    rows = []
    load_before = os.getloadavg()
    for cores in [int(c) for c in args.order.split(",")]:
        wall = run(args.project, cores, targets)
        rows.append({"cores": cores, "jobs": len(targets), "wall_s": wall})
        print(f"--cores {cores}: {len(targets)} screening jobs in {wall:.1f} s", flush=True)
    by = {c: statistics.median(r["wall_s"] for r in rows if r["cores"] == c) for c in sorted({r["cores"] for r in rows})}
    ratio = by[1] / by[2]
    load = os.getloadavg()
    lines = ["| cores | screening jobs | wall times (run order) | median | speed-up vs 1 core |", "|---|---|---|---|---|"]
    for c, med in by.items():
        walls = ", ".join(f"{r['wall_s']:.1f} s" for r in rows if r["cores"] == c)
        lines.append(f"| {c} | {len(targets)} | {walls} | {med:.1f} s | {by[1] / med:.2f}× |")
    table = "\n".join(lines)
    print(table)
    print(f"ratio wall(1 core) / wall(2 cores) = {ratio:.2f}")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "parallel.json").write_text(json.dumps({"rows": rows, "ratio": ratio, "targets": targets, "loadavg_before": load_before, "loadavg_after": load,
                                                   "dry_run_tail": dry.splitlines()[-15:]}, indent=2))
    cmd = f"python bench/bench_parallel.py --project <copy of a finished default run> --aux {' '.join(args.aux)} --seeds {' '.join(map(str, args.seeds))} --order {args.order}"
    (out / "parallel.md").write_text(f"`{cmd}` (threads per job: params `threads` = 1)\n\n{table}\n\nratio 1-core / 2-core wall time (medians): **{ratio:.2f}×**; load average before {load_before[0]:.2f}, after {load[0]:.2f}\n")


if __name__ == "__main__":
    main()
