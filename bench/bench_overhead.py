"""Pipeline overhead with every artifact present: `snakemake -n` and `dvc status` vs tool start-up.

Run in a project whose pipeline has completed (and, for DVC, been recorded with `dvc commit -f`
or run by `dvc repro`). Each command runs `--repeats` times; medians are compared side by side:

    python bench/bench_overhead.py --project /path/to/finished/project
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path


def timed(cmd: list[str], cwd: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, default=Path("."))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    pairs = {
        "snakemake": (["snakemake", "--version"], ["snakemake", "--cores", "2", "-n"]),
        "dvc": (["dvc", "version"], ["dvc", "status"]),
    }
    rows = []
    for tool, (startup, check) in pairs.items():
        base = timed(startup, args.project, args.repeats)
        full = timed(check, args.project, args.repeats)
        rows.append({"tool": tool, "startup_s": base, "check_s": full, "overhead_s": full - base})
    lines = ["| tool | start-up (median) | check with all artifacts present | difference | target |", "|---|---|---|---|---|"]
    for r in rows:
        check = "snakemake --cores 2 -n" if r["tool"] == "snakemake" else "dvc status"
        lines.append(f"| {r['tool']} | {r['startup_s']:.2f} s | `{check}` {r['check_s']:.2f} s | **{r['overhead_s']:+.2f} s** | ≤ +2 s |")
    table = "\n".join(lines)
    print(table)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "overhead.json").write_text(json.dumps(rows, indent=2))
    (out / "overhead.md").write_text(f"`python bench/bench_overhead.py --project <finished default run>` ({args.repeats} repeats, medians)\n\n{table}\n")


if __name__ == "__main__":
    main()
