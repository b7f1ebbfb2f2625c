"""The default run as a fresh clone does it: `snakemake --cores 2` on the shipped params.yaml in a new
temp project, timed; writes its selection and final-test tables to bench/results/default_run.{md,json}
(README.md's "Results of the default run" is that file, copied by bench/update_readme.py).

    python bench/default_run.py [--cores 2]
    python bench/default_run.py --check     # CI: rerun, compare with the committed results
    python bench/default_run.py --avil '{"dev_batch": 128}' --results default_run_b128   # a variant, to its own file

`--check` writes nothing: it fails (exit 1, one line per difference) when the rerun's selection is
not the committed one or a final method's mean test metric differs by more than `--tolerance`
(default 0.005, i.e. 10 of the 2,000 test images; reruns on this machine were bit-identical, so any
difference here is a stale README or a change of machine kind - float sums can differ between CPU
instruction sets, which the tolerance absorbs while a stale README after a method change does not).
It also prints how far the rerun is from bit-identity (every number of the selection and the
report compared exactly) beside both machines' fingerprints (CPU model, the instruction set torch
dispatches to, VM boot id): the record of whether results are bit-identical across machines.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_args import add_variant_args, apply_variant, check_variant, is_variant, variant_command  # noqa: E402
from bench_text_pipeline import make_project, snakemake  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--check", action="store_true", help="rerun and compare with bench/results/default_run.json")
    ap.add_argument("--tolerance", type=float, default=0.005)
    add_variant_args(ap, "default_run")
    args = ap.parse_args()
    if args.check and (is_variant(args) or args.results != "default_run"):
        raise SystemExit("--check compares the shipped params' run with bench/results/default_run.json: "
                         "no --avil/--target-task/--results")
    check_variant(args, "default_run")
    params_text = (ROOT / "params.yaml").read_text()
    if is_variant(args):
        import yaml

        params_text = yaml.safe_dump(apply_variant(yaml.safe_load(params_text), args), sort_keys=False)
    project = Path(tempfile.mkdtemp(prefix="auxsel-default-")) / "p"
    raw = ROOT / "data" / "raw"
    raw.mkdir(parents=True, exist_ok=True)  # a fresh clone: the pipeline's fetch rule fills the project's copy
    make_project(project, raw, params_text)
    wall, jobs = snakemake(project, args.cores)
    sel = json.loads((project / "results/selection.json").read_text())
    rows = pq.read_table(project / "results/selection.parquet").to_pylist()
    report = json.loads((project / "results/report/metrics.json").read_text())
    if args.check:
        saved = json.loads((ROOT / "bench/results/default_run.json").read_text())
        problems = compare(saved, sel, report, args.tolerance)
        print(bit_identity(saved, sel, report))
        print(f"committed run's machine: {json.dumps(saved.get('machine', 'not recorded'), sort_keys=True)}")
        print(f"this machine:            {json.dumps(machine(), sort_keys=True)}")
        for p in problems:
            print(f"default run differs from bench/results/default_run.json (README): {p}")
        if problems:
            raise SystemExit(1)
        print(f"default run reproduces README's results (selection {sel['selected']}, test means within "
              f"{args.tolerance}; {wall:.0f} s)")
        return
    import torch

    lines = [
        f"`snakemake --cores {args.cores}` on a fresh project with the shipped params.yaml"
        + (f" and `avil: {json.dumps(args.avil)}`" if args.avil else "")
        + (f" and target task `{json.dumps(args.target_task)}`" if args.target_task else "")
        + " (`python bench/default_run.py"
        + variant_command(args, "default_run")
        + "`), "
        f"{datetime.now():%Y-%m-%d %H:%M}, {platform.machine()} {os.cpu_count()}-core CPU, torch {torch.__version__}, "
        f"one thread per job: **{wall:.0f} s wall** for {sum(jobs.values())} jobs "
        f"({', '.join(f'{n} {k}' for k, n in jobs.items())}).",
        "",
        f"Selection (target `{sel['target']}`, {sel['split']} {sel['metric']} gain over single-task paired by seed, "
        f"{rows[0]['n_seeds']} seeds, {sel['rule']['confidence']:.0%} interval; one-sided t test, "
        f"{sel['rule'].get('variance', 'pooled')} sd, Holm at family-wise level {sel['rule'].get('level', 0.1):g}; "
        "weight = screened αVIL weight, target = 1):",
        "",
        "| rank | candidate | weight | dev gain | interval | Holm p | gain over null | dev examples' se | Holm p | decision |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        decision = "**keep**" if r["selected"] else f"drop: {r['reason']}"
        lines.append(f"| {r['rank']} | {r['aux']} | {r['weight_mean']:.3f} ± {r['weight_std']:.3f} | {r['gain_mean']:+.4f} | "
                     f"[{r['gain_ci_low']:+.4f}, {r['gain_ci_high']:+.4f}] | {r['p_holm']:.3f} | "
                     f"{r['null_gain_mean']:+.4f} | {_se(r.get('null_dev_se'))} | {r['null_p_holm']:.3f} | {decision} |")
    null = sel["null"]
    lines += ["", f"Null candidate (target inputs, permuted labels): gain over single-task {null['gain_mean']:+.4f} "
              f"[{null['gain_ci_low']:+.4f}, {null['gain_ci_high']:+.4f}] on the dev holdout — what the multitask "
              "machinery gives by itself."]
    if sel.get("power"):
        from auxsel.report.tables import power_sentence

        lines += ["", power_sentence(sel["power"])]
    lines += ["", f"Target test {report['metric']} of the final runs (mean ± std over seeds; selected: "
              f"{', '.join(sel['selected']) or 'none'}):", "", "| final method | test | n seeds |", "|---|---|---|"]
    for method, t in report["test"].items():
        lines.append(f"| {method} | {t['mean']:.3f} ± {t['std']:.3f} | {t['n_seeds']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench" / "results"
    (out / f"{args.results}.md").write_text(text)
    (out / f"{args.results}.json").write_text(json.dumps({"wall_seconds": wall, "jobs": jobs, "selection": sel,
                                                      "report": report, "project": str(project),
                                                      "machine": machine()}, indent=1))


def _se(value) -> str:
    return f"{value:.4f}" if value is not None and math.isfinite(value) else "not measured"


def machine() -> dict[str, str]:
    """What decides whether CPU float results can differ: the CPU model and feature flags, the
    instruction set torch dispatches its kernels to, torch's version; the boot id tells one VM
    instance from another (the same id: a rerun on the same machine)."""
    import torch

    def read(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    info = read("/proc/cpuinfo")
    field = lambda name: next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith(name)), "")  # noqa: E731
    flags = " ".join(sorted(field("flags").split()))
    return {"cpu": field("model name") or platform.processor(), "cpu_flags_sha256": hashlib.sha256(flags.encode()).hexdigest()[:16],
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "boot_id": read("/proc/sys/kernel/random/boot_id").strip()}


def numbers(obj, path: str = "") -> dict[str, float]:
    """Every number in a JSON tree, by path."""
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in numbers(val, f"{path}.{key}").items()}
    if isinstance(obj, list):
        return {k: v for i, val in enumerate(obj) for k, v in numbers(val, f"{path}[{i}]").items()}
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return {path: float(obj)}
    return {}


def bit_identity(saved: dict, sel: dict, report: dict) -> str:
    """One line: whether every number of the rerun's selection and report equals the committed one
    exactly, else how many differ and the largest difference."""
    old = {**numbers(saved["selection"], "selection"), **numbers(saved["report"], "report")}
    new = {**numbers(sel, "selection"), **numbers(report, "report")}
    common = sorted(set(old) & set(new))
    diffs = {k: abs(old[k] - new[k]) for k in common if old[k] != new[k]}
    if not diffs and set(old) == set(new):
        return f"bit-identical to the committed run: all {len(common)} numbers of the selection and report equal"
    worst = max(diffs, key=diffs.get) if diffs else None
    return (f"not bit-identical: {len(diffs)} of {len(common)} numbers differ"
            + (f", largest |diff| {diffs[worst]:.3g} at {worst}" if worst else "")
            + (f"; {len(set(old) ^ set(new))} numbers in only one of the runs" if set(old) != set(new) else ""))


def compare(saved: dict, sel: dict, report: dict, tol: float) -> list[str]:
    """Differences between a committed default run and a rerun: the selection exactly, the final
    methods' mean test metric within `tol`."""
    out = []
    if saved["selection"]["selected"] != sel["selected"]:
        out.append(f"selected {sel['selected']}, README says {saved['selection']['selected']}")
    old, new = saved["report"]["test"], report["test"]
    if set(old) != set(new):
        out.append(f"final methods {sorted(new)}, README has {sorted(old)}")
    for m in sorted(set(old) & set(new)):
        if abs(old[m]["mean"] - new[m]["mean"]) > tol:
            out.append(f"{m} test mean {new[m]['mean']:.4f}, README {old[m]['mean']:.4f} (tolerance {tol})")
    return out


if __name__ == "__main__":
    main()
