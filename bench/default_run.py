"""The default run as a fresh clone does it: `snakemake --cores 2` on the shipped params.yaml in a new
temp project, timed; writes its selection and final-test tables to bench/results/default_run.{md,json}
(README.md's "Results of the default run" is that file, copied by bench/update_readme.py).

    python bench/default_run.py [--cores 2]
    python bench/default_run.py --check     # CI: rerun, compare with the committed results
    python bench/default_run.py --record-machine [--from-project P]   # this CPU kind's own record (see below)
    python bench/default_run.py --avil '{"dev_batch": 128}' --results default_run_b128   # a variant, to its own file

`--check` writes nothing: it fails (exit 1, one line per difference) when the rerun's selection is
not the committed one or a final method's mean test metric differs by more than `--tolerance`
(default 0.005, i.e. 10 of the 2,000 test images; reruns on this machine were bit-identical, so any
difference here is a stale README or a change of machine kind - float sums can differ between CPU
instruction sets, which the tolerance absorbs while a stale README after a method change does not).
It also prints how far the rerun is from bit-identity (every number of the selection and the
report compared exactly) beside both machines' fingerprints (CPU model, the instruction set torch
dispatches to, VM boot id): the record of whether results are bit-identical across machines.

They are not across CPU vendors: on an Intel Xeon the default run selected left_more and parity where
the committed run (AMD EPYC, both AVX512) selected left_more alone (bench/README.md §9): αVIL's fits
turn last-bit differences of the float kernels into different runs, as another seed would. So the
check compares exactly only against a run of the same CPU kind (model, flags, torch's kernel ISA,
torch version): the README's, or one recorded for this kind with `--record-machine` from the same
code (bench/results/default_run_machines.json; a record from other code is stale and ignored). On a
kind with no current record it can only ask whether the rerun is the committed run up to seed
noise: every final's mean test metric and every candidate's mean gains within `--z` standard
errors of the two runs combined; the selection may then differ, and the check names what did.
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
    ap.add_argument("--z", type=float, default=3.29, help="--check on a CPU kind with no record: standard errors "
                    "allowed between the two runs' means (3.29: two-sided 0.001 per number)")
    ap.add_argument("--record-machine", action="store_true",
                    help="record this CPU kind's default run (bench/results/default_run_machines.json)")
    ap.add_argument("--from-project", type=Path, help="with --record-machine: a finished project of the shipped "
                    "params.yaml and this checkout's code, instead of a fresh run")
    add_variant_args(ap, "default_run")
    args = ap.parse_args()
    if (args.check or args.record_machine) and (is_variant(args) or args.results != "default_run"):
        raise SystemExit("--check and --record-machine are for the shipped params' run (bench/results/default_run.json): "
                         "no --avil/--target-task/--results")
    if args.from_project and not args.record_machine:
        raise SystemExit("--from-project goes with --record-machine")
    check_variant(args, "default_run")
    params_text = (ROOT / "params.yaml").read_text()
    if is_variant(args):
        import yaml

        params_text = yaml.safe_dump(apply_variant(yaml.safe_load(params_text), args), sort_keys=False)
    if args.from_project:
        project, wall, jobs = args.from_project, None, None
        if (project / "params.yaml").read_text() != params_text:
            raise SystemExit(f"--from-project {project}: its params.yaml is not the shipped one")
        if code_digest(project) != code_digest(ROOT):
            raise SystemExit(f"--from-project {project}: its code is not this checkout's")
    else:
        project = Path(tempfile.mkdtemp(prefix="auxsel-default-")) / "p"
        raw = ROOT / "data" / "raw"
        raw.mkdir(parents=True, exist_ok=True)  # a fresh clone: the pipeline's fetch rule fills the project's copy
        make_project(project, raw, params_text)
        wall, jobs = snakemake(project, args.cores)
    sel = json.loads((project / "results/selection.json").read_text())
    rows = pq.read_table(project / "results/selection.parquet").to_pylist()
    report = json.loads((project / "results/report/metrics.json").read_text())
    if args.check:
        raise SystemExit(check(sel, report, args.tolerance, args.z, wall))
    if args.record_machine:
        record_machine(sel, report, wall, str(project))
        return
    import torch

    lines = [
        f"`snakemake --cores {args.cores}` on a fresh project with the shipped params.yaml"
        + (f" and `avil: {json.dumps(args.avil)}`" if args.avil else "")
        + (f" and target task `{json.dumps(args.target_task)}`" if args.target_task else "")
        + (f" and `train: {json.dumps(args.train)}`" if args.train else "")
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
    rec = report.get("recommended")
    if rec and rec.get("method"):
        lines += ["", f"Recommended final (the report's; docs/methods.md, \"Which final to use\"): **{rec['method']}** — "
                  f"{rec['reason']}."]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench" / "results"
    (out / f"{args.results}.md").write_text(text)
    (out / f"{args.results}.json").write_text(json.dumps({"wall_seconds": wall, "jobs": jobs, "selection": sel,
                                                      "report": report, "project": str(project),
                                                      "machine": machine(), "code_sha256": code_digest(ROOT)},
                                                     indent=1))
    if args.results == "default_run":
        write_machines_md()


MACHINES = ROOT / "bench/results/default_run_machines.json"
# what decides a run besides the seeds: the code, the shipped params and the pinned versions
CODE_GLOBS = ("src/auxsel/**/*.py", "stages/*.py", "Snakefile", "workflow/**/*", "params.yaml", "constraints.txt")


def load_saved() -> dict:
    """The README's run (bench/results/default_run.json)."""
    return json.loads((ROOT / "bench/results/default_run.json").read_text())


def load_records() -> dict:
    """Every CPU kind's recorded run, by kind."""
    return json.loads(MACHINES.read_text())["runs"] if MACHINES.exists() else {}


def code_digest(root: Path) -> str:
    """sha256 over the files that decide the default run's numbers (paths and contents)."""
    h = hashlib.sha256()
    for pattern in CODE_GLOBS:
        for path in sorted(p for p in root.glob(pattern) if p.is_file() and "__pycache__" not in p.parts):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def kind(m: dict) -> str:
    """A CPU kind: what decides which float kernels run (not the VM instance)."""
    return f"{m.get('cpu', '?')}, flags {m.get('cpu_flags_sha256', '?')}, {m.get('torch_cpu_capability', '?')}, torch {m.get('torch', '?')}"


def reference(saved: dict, here: dict, records: dict) -> tuple[dict | None, str]:
    """The run a rerun on `here` must equal: the README's when it ran on this CPU kind, else this
    kind's record when it is from the README run's code; None when there is neither."""
    if "machine" in saved and kind(saved["machine"]) == kind(here):
        return saved, "the committed run (README), same CPU kind"
    rec = records.get(kind(here))
    if rec is None:
        return None, "no run recorded for this CPU kind"
    if rec.get("code_sha256") != saved.get("code_sha256"):
        return None, "this CPU kind's record is from other code than the README's run (stale)"
    return rec, f"this CPU kind's record ({rec.get('date', '?')})"


def check(sel: dict, report: dict, tol: float, z: float, wall: float | None) -> int:
    """--check: 0 when the rerun is the committed one (exactly, on a CPU kind that has a run of the
    README's code; up to seed noise elsewhere), else 1, one line per difference."""
    saved = load_saved()
    records = load_records()
    here = machine()
    ref, why = reference(saved, here, records)
    print(bit_identity(ref or saved, sel, report))
    print(f"committed run's machine: {json.dumps(saved.get('machine', 'not recorded'), sort_keys=True)}")
    print(f"this machine:            {json.dumps(here, sort_keys=True)}")
    print(f"compared with: {why}")
    if ref is not None:
        problems = compare(ref, sel, report, tol)
        label = "bench/results/default_run.json (README)" if ref is saved else f"{MACHINES.name} ({kind(here)})"
    else:
        problems, notes = consistent(saved, sel, report, z)
        label = f"bench/results/default_run.json (README) beyond seed noise ({z:g} se)"
        for n in notes:
            print(f"note: {n}")
    for p in problems:
        print(f"default run differs from {label}: {p}")
    if problems:
        return 1
    how = (f"test means within {tol}" if ref is not None else f"every mean within {z:g} standard errors of the README run's")
    whose = "README's results" if ref is saved else "this CPU kind's recorded run" if ref is not None else "README's results up to seed noise"
    print(f"default run reproduces {whose} (selection {sel['selected']}, {how}"
          + (f"; {wall:.0f} s)" if wall is not None else ")"))
    return 0


def consistent(saved: dict, sel: dict, report: dict, z: float) -> tuple[list[str], list[str]]:
    """A rerun on another CPU kind against the committed run, as two replications of one experiment:
    each final method's mean test metric and each candidate's mean gain over single-task and over
    the null may differ by at most z·√(se₁² + se₂²). The finals that train the selection (fixed,
    avil) are compared only when the selection is the same. Returns (problems, notes)."""
    problems, notes = [], []
    same = sorted(saved["selection"]["selected"]) == sorted(sel["selected"])
    if not same:
        notes.append(f"selected {sel['selected']} where the README run selected {saved['selection']['selected']} "
                     "(another CPU kind: allowed when the gains below agree up to seed noise)")
    old, new = saved["report"]["test"], report["test"]
    if set(old) != set(new):
        problems.append(f"final methods {sorted(new)}, README has {sorted(old)}")
    for m in sorted(set(old) & set(new)):
        if not same and m in ("fixed", "avil"):
            continue
        se = math.hypot(old[m]["std"] / math.sqrt(old[m]["n_seeds"]), new[m]["std"] / math.sqrt(new[m]["n_seeds"]))
        if abs(old[m]["mean"] - new[m]["mean"]) > z * se:
            problems.append(f"{m} test mean {new[m]['mean']:.4f}, README {old[m]['mean']:.4f} (more than {z:g} × se {se:.4f})")
    rows_old = {r["aux"]: r for r in saved["selection"]["candidates"]}
    rows_new = {r["aux"]: r for r in sel["candidates"]}
    if set(rows_old) != set(rows_new):
        problems.append(f"candidates {sorted(rows_new)}, README has {sorted(rows_old)}")
    for a in sorted(set(rows_old) & set(rows_new)):
        for key, label in (("gain", "gain over single-task"), ("null_gain", "gain over the null")):
            o, n = rows_old[a], rows_new[a]
            se = math.hypot(mean_se(o, key), mean_se(n, key))
            if abs(o[f"{key}_mean"] - n[f"{key}_mean"]) > z * se:
                problems.append(f"{a}: {label} {n[f'{key}_mean']:+.4f}, README {o[f'{key}_mean']:+.4f} "
                                f"(more than {z:g} × se {se:.4f})")
    return problems, notes


def mean_se(row: dict, key: str) -> float:
    """The standard error of a candidate row's mean `key` over seeds: its seeds' own spread where the
    row keeps it, else the test's standard error (the gain over the null keeps only that)."""
    if f"{key}_std" in row:
        return row[f"{key}_std"] / math.sqrt(row["n_seeds"])
    return row[f"{key}_se"]


def record_machine(sel: dict, report: dict, wall: float | None, project: str) -> None:
    """Store this CPU kind's default run beside the README's (same code), and its table."""
    saved = load_saved()
    here = machine()
    if kind(saved.get("machine", {})) == kind(here):
        raise SystemExit("this CPU kind is the README run's: regenerate it with `python bench/default_run.py` instead")
    if saved.get("code_sha256") != code_digest(ROOT):
        raise SystemExit("bench/results/default_run.json is from other code than this checkout: regenerate the "
                         "README's run first (`python bench/default_run.py`), then record this kind")
    records = load_records()
    records[kind(here)] = {"machine": here, "date": f"{datetime.now():%Y-%m-%d %H:%M}", "wall_seconds": wall,
                           "project": project, "code_sha256": code_digest(ROOT), "selection": sel, "report": report}
    MACHINES.write_text(json.dumps({"runs": records}, indent=1))
    write_machines_md()
    print(f"recorded the default run of {kind(here)}: selected {sel['selected']}")


def write_machines_md() -> None:
    """bench/results/default_run_machines.md: the README's run and every CPU kind's record side by
    side (selection, final test means), stale records marked."""
    saved = load_saved()
    records = load_records()
    runs = [("README's run", saved)] + [(r.get("date", "?"), r) for r in records.values()]
    methods = sorted(saved["report"]["test"])
    lines = ["| run | CPU kind | code | selected | " + " | ".join(f"{m} test" for m in methods) + " |",
             "|---|---|---|---|" + "---|" * len(methods)]
    for label, r in runs:
        code = r.get("code_sha256", "?")
        status = "" if r is saved or code == saved.get("code_sha256") else " (stale: other code)"
        cells = [f"{r['report']['test'][m]['mean']:.3f} ± {r['report']['test'][m]['std']:.3f}" if m in r["report"]["test"]
                 else "—" for m in methods]
        lines.append(f"| {label} | {kind(r.get('machine', {}))} | `{code}`{status} | {', '.join(r['selection']['selected']) or 'none'} | "
                     + " | ".join(cells) + " |")
    (ROOT / "bench/results/default_run_machines.md").write_text(
        "The default run (`snakemake --cores 2`, shipped params.yaml) on each CPU kind it has been run on "
        "(`python bench/default_run.py` for the README's, `--record-machine` for the others; `--check` compares "
        "exactly against the run of its own kind):\n\n" + "\n".join(lines) + "\n")


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
    was, now = (r.get("recommended", {}).get("method") for r in (saved["report"], report))
    if was is not None and was != now:
        out.append(f"recommended final {now}, README recommends {was}")
    return out


if __name__ == "__main__":
    main()
