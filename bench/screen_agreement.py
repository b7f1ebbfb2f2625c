"""Does frozen-encoder screening rank the text pool's candidates as fine-tuned screening does?

Reads two `bench_text_pipeline.py` results (screening over the same candidates and seeds) and
prints the Spearman rank correlation of the candidates' screened weights and of their dev gains
between the two modes: on the means over seeds, and seed by seed (mean ± std).

    python bench/screen_agreement.py bench/results/text_pipeline_finetuned.json bench/results/text_pipeline_frozen.json

Writes bench/results/screen_agreement.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics as st
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ranks(values: list[float]) -> list[float]:
    """Ranks 1..n, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    ma, mb = st.mean(ra), st.mean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("finetuned", type=Path)
    ap.add_argument("frozen", type=Path)
    ap.add_argument("--positive", default="sentiment_more")
    args = ap.parse_args()
    runs = {name: json.loads(p.read_text()) for name, p in (("fine-tuned", args.finetuned), ("frozen", args.frozen))}
    scr = {k: r["screening"]["candidates"] for k, r in runs.items()}
    cands = sorted(set(scr["fine-tuned"]) & set(scr["frozen"]))
    seeds = sorted(set.intersection(*(set(scr[k][cands[0]]) for k in scr)), key=int)
    out: dict = {"candidates": cands, "seeds": seeds, "measures": {}}
    lines = [f"`python bench/screen_agreement.py {args.finetuned.name} {args.frozen.name}`: candidates {', '.join(cands)}; "
             f"seeds {', '.join(seeds)}", "",
             "| measure | Spearman of the means over seeds | per seed (mean ± std) | positive control top: fine-tuned / frozen |",
             "|---|---|---|---|"]
    for measure in ("weight", "dev_gain", "test_gain"):
        mean = {k: [st.mean(scr[k][c][s][measure] for s in seeds) for c in cands] for k in scr}
        rho = spearman(mean["fine-tuned"], mean["frozen"])
        per_seed = [spearman([scr["fine-tuned"][c][s][measure] for c in cands], [scr["frozen"][c][s][measure] for c in cands])
                    for s in seeds]
        tops = {k: sum(max(cands, key=lambda c: scr[k][c][s][measure]) == args.positive for s in seeds) for k in scr}
        out["measures"][measure] = {"means": mean, "spearman_of_means": rho, "spearman_per_seed": per_seed, "positive_top": tops}
        lines.append(f"| {measure.replace('_', ' ')} | {rho:+.2f} | {st.mean(per_seed):+.2f} ± {st.stdev(per_seed):.2f} | "
                     f"{tops['fine-tuned']} / {tops['frozen']} of {len(seeds)} |")
    lines += ["", "| candidate | " + " | ".join(f"{k} weight | {k} dev gain" for k in scr) + " |", "|---" * (1 + 2 * len(scr)) + "|"]
    for i, c in enumerate(cands):
        cells = [f"{out['measures']['weight']['means'][k][i]:.3f} | {out['measures']['dev_gain']['means'][k][i]:+.3f}" for k in scr]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    res = ROOT / "bench" / "results"
    (res / "screen_agreement.json").write_text(json.dumps(out, indent=2))
    (res / "screen_agreement.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
