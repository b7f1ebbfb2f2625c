"""Paper-style table from a finished pipeline run: target test metric (mean ± std over seeds) per final
method, the final weights of named candidates in the *_all runs, and the selection.

Set up a project with every method and ≥5 seeds, run it, then read it:

    cp -a /path/to/finished/default/project /tmp/paper && cd /tmp/paper
    # params.yaml: seeds: [0, 1, 2, 3, 4]
    #              final.methods: [single, uniform_all, diw_all, avil_literal_all, avil_all, fixed, avil]
    snakemake --cores 1
    cd - && python bench/bench_paper_table.py --project /tmp/paper --show left_more right shuffled

Writes bench/results/paper_table.{json,md} (--tag NAME writes paper_table_NAME.*).
"""

from __future__ import annotations

import argparse
import json
import statistics as st
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import yaml

ORDER = ["single", "uniform_all", "diw_all", "avil_literal_all", "avil_all", "uniform_selected", "fixed", "avil"]


def torch_version() -> str:
    import torch

    return torch.__version__


def screen_table(p: Path, params: dict, seeds: list[int], positive: str, metric: str) -> str:
    """Each seed's pairwise screen (αVIL on {target, a}): the screened weight and the target's test
    gain over the baseline of that seed; is the positive control's weight on top?"""
    cands, target = params["candidates"], params["target"]
    lines = ["| seed | " + " | ".join(cands) + f" | {positive} top |", "|---" * (len(cands) + 2) + "|"]
    tops = 0
    for s in seeds:
        base = json.loads((p / f"results/baseline/{target}/seed-{s}/summary.json").read_text())["metrics"]["test"][metric]
        summ = {a: json.loads((p / f"results/screen/{a}/seed-{s}/summary.json").read_text()) for a in cands}
        w = {a: summ[a]["final_weights"][a] for a in cands}
        top = max(w, key=w.get) == positive
        tops += top
        lines.append(f"| {s} | " + " | ".join(f"{w[a]:.2f} ({summ[a]['metrics']['test'][metric] - base:+.3f})" for a in cands)
                     + f" | {'yes' if top else 'no'} |")
    return (f"Screened weight per seed (test {metric} gain of the pair over the seed's baseline); "
            f"{positive} top on {tops} of {len(seeds)}:\n\n" + "\n".join(lines))


def ms(vals: list[float]) -> str:
    if not vals:
        return "—"
    return f"{st.mean(vals):.3f} ± {st.stdev(vals):.3f}" if len(vals) > 1 else f"{vals[0]:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--show", nargs="+", default=["left_more", "right", "shuffled"], help="candidates whose final weights to show")
    ap.add_argument("--positive", default="left_more", help="positive control (counted when it has the top auxiliary weight)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--ran-with", default="snakemake --cores 1", help="how the project's pipeline was run (written into the table's header)")
    ap.add_argument("--screen-only", action="store_true", help="a project run up to the selection (no final runs)")
    ap.add_argument("--wall", default="", help="wall time of that run, e.g. '44 min 28 s' (written into the header)")
    args = ap.parse_args()
    wall = f" in {args.wall}" if args.wall else ""
    p = args.project
    params = yaml.safe_load((p / "params.yaml").read_text())
    target, seeds = params["target"], params["seeds"]
    metric = params["tasks"][target]["metric"] if "metric" in params["tasks"][target] else "accuracy"
    sel = json.loads((p / "results/selection.json").read_text())
    selected = [c["aux"] for c in sel["candidates"] if c["selected"]]
    rows, raw = [], {}
    for method in [m for m in ORDER if m in params["final"]["methods"] and not args.screen_only]:
        test, dev, secs, weights = [], [], [], {a: [] for a in args.show}
        top = 0
        for s in seeds:
            d = p / f"results/final/{method}/seed-{s}"
            summ = json.loads((d / "summary.json").read_text())
            test.append(summ["metrics"]["test"][metric])
            dev.append(summ["metrics"]["dev"][metric])
            secs.append(json.loads((d / "provenance.json").read_text())["wall_seconds"])
            fw = summ.get("final_weights") or {}
            for a in args.show:
                if a in fw:
                    weights[a].append(fw[a])
            aux_w = {k: v for k, v in fw.items() if k != target}
            others = [v for k, v in aux_w.items() if k != args.positive]
            if aux_w.get(args.positive, 0) > 0 and all(aux_w[args.positive] > v for v in others):  # strictly top, ties (all 0) not counted
                top += 1
        raw[method] = {"test": test, "dev": dev, "wall_seconds": secs, "weights": weights, "positive_top": top}
        has_w = method.endswith("_all") and method != "uniform_all"
        wtxt = " / ".join(ms(weights[a]) if weights[a] else "—" for a in args.show) if has_w else "—"
        if method in ("fixed", "avil", "uniform_selected"):  # the selected candidates' weights
            sel_w = {a: [json.loads((p / f"results/final/{method}/seed-{s}/summary.json").read_text())["final_weights"].get(a, 0.0)
                         for s in seeds] for a in selected}
            raw[method]["selected_weights"] = sel_w
            wtxt = ", ".join(f"selected {a}: {ms(v)}" for a, v in sel_w.items()) or "— (nothing selected)"
        if method == "uniform_all":
            wtxt = " / ".join("1" for _ in args.show)
        toptxt = f"{top} of {len(seeds)}" if has_w else "—"
        rows.append(f"| `{method}` | {ms(test)} | {ms(dev)} | {wtxt} | {toptxt} | {st.mean(secs):.1f} s |")
    single = raw["single"]["test"] if "single" in raw else []
    gains = []
    for method, r in raw.items():
        if method != "single" and single:
            g = [a - b for a, b in zip(r["test"], single)]
            wins = sum(x > 0 for x in g)
            gains.append(f"| `{method}` | {st.mean(g):+.3f} ± {st.stdev(g):.3f} | {wins} of {len(g)} |")
    head = (f"| final method | target test {metric} ({len(seeds)} seeds) | target dev {metric} | final weights {' / '.join(args.show)} "
            f"(mean ± std) | {args.positive} top weight | training s / run |\n|---|---|---|---|---|---|")
    table = head + "\n" + "\n".join(rows)
    gtable = "| final method | paired test gain vs single | seeds above single |\n|---|---|---|\n" + "\n".join(gains)
    seltxt = (f"Selection (dev only, seeds {seeds}): {', '.join(selected) or 'nothing'}; "
              + "; ".join(f"{c['aux']} w {c['weight_mean']:.2f}, gain {c['gain_mean']:+.3f} [{c['gain_ci_low']:+.3f}, {c['gain_ci_high']:+.3f}] "
                          f"{'KEEP' if c['selected'] else 'drop'}" for c in sel["candidates"]))
    stable = screen_table(p, params, seeds, args.positive, metric)
    if args.screen_only:
        table = gtable = "(screening only: no final runs)"
    print(table, "", gtable, "", seltxt, "", stable, sep="\n")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    name = "paper_table" + (f"_{args.tag}" if args.tag else "")
    (out / f"{name}.json").write_text(json.dumps({"target": target, "seeds": seeds, "selected": selected, "selection": sel, "runs": raw}, indent=2))
    (out / f"{name}.md").write_text(
        f"`python bench/bench_paper_table.py --project <run with seeds {seeds} and final.methods {params['final']['methods']}>` "
        f"{'--screen-only' if args.screen_only else '--show ' + ' '.join(args.show)} (pipeline run by `{args.ran_with}`{wall}; 2-core CPU, torch {torch_version()}, one thread per job, {date.today()})\n\n{table}\n\n{gtable}\n\n{seltxt}\n\n{stable}\n")


if __name__ == "__main__":
    main()
