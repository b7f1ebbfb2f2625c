"""Issue 16 item 8: random mutations of params.yaml through the entry point every tool runs first
(`python -m stages.check`: DVC's first stage; Snakemake runs the same checks when it starts).

Each case ends in exit 0, or exit 2 with one line `error: ...`; never a traceback (any exception
other than the one-line exit fails the test), and the finished outputs in the folder stay as they
were. Cases run in this process (a subprocess each would take ~1 s: 250 cases in seconds here).
"""

from __future__ import annotations

import contextlib
import copy
import io
import random
import sys
from typing import Any

import pytest
import yaml

from conftest import ROOT, copy_project

CASES = 250
SEED = 16
VALUES = [None, 0, -1, 1, 2.5, -0.5, 10**12, "", "abc", "0:10", [], [0], ["left"], {}, {"x": 1}, True, False,
          float("nan"), float("inf"), "2026-01-01"]


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


def _parent(tree: Any, path: tuple) -> Any:
    for k in path[:-1]:
        tree = tree[k]
    return tree


def _typo(key: str, rng: random.Random) -> str:
    if len(key) > 2 and rng.random() < 0.5:
        i = rng.randrange(len(key) - 1)
        return key[:i] + key[i + 1] + key[i] + key[i + 2:]
    return key + rng.choice(["s", "_", "x"])


def mutate(params: dict, rng: random.Random) -> str:
    """One random change of the params: a value replaced, a key deleted, renamed or added, an item
    duplicated; or, on the YAML text, a line dropped, duplicated, cut or mis-indented."""
    kind = rng.choice(["value", "value", "value", "delete", "rename", "add", "duplicate", "text"])
    tree = copy.deepcopy(params)
    path = rng.choice([p for p in _paths(tree) if p])
    parent, last = _parent(tree, path), path[-1]
    if kind == "value":
        parent[last] = copy.deepcopy(rng.choice(VALUES))
    elif kind == "delete":
        del parent[last]
    elif kind == "rename" and isinstance(last, str):
        parent[_typo(last, rng)] = parent.pop(last)
    elif kind == "add":
        target = parent if isinstance(parent, dict) else tree
        target[rng.choice(["extra", "seedz", "epochs", "options", "n"])] = copy.deepcopy(rng.choice(VALUES))
    elif kind == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))
    text = yaml.safe_dump(tree, sort_keys=False)
    if kind == "text":
        lines = text.splitlines()
        i = rng.randrange(len(lines))
        how = rng.choice(["drop", "dup", "cut", "indent", "colon"])
        if how == "drop":
            del lines[i]
        elif how == "dup":
            lines.insert(i, lines[i])
        elif how == "cut":
            lines = lines[:i] + [lines[i][: len(lines[i]) // 2]]
        elif how == "indent":
            lines[i] = " " + lines[i]
        else:
            lines[i] = lines[i] + ": :"
        text = "\n".join(lines) + "\n"
    return text


def _run_check() -> tuple[int, str]:
    """`python -m stages.check`, in this process: (exit code, stderr)."""
    from stages import _common, check

    err = io.StringIO()
    argv, sys.argv = sys.argv, ["stages/check.py"]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            _common.run(check.main)
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
    return code, err.getvalue()


def test_random_params_mutations_exit_cleanly_and_remove_nothing(tmp_path, monkeypatch):
    from auxsel import runlock
    from test_pipeline import tree_digest

    root = copy_project(tmp_path / "p")
    out = root / "results/screen/left_more/seed-0"  # a finished output that must survive every case
    out.mkdir(parents=True)
    (out / "summary.json").write_text('{"final_weights": {"left_more": 1.0}}\n')
    (root / "data/prepared/left").mkdir(parents=True)
    (root / "data/prepared/left/meta.json").write_text("{}\n")
    before = tree_digest(root)
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    rng = random.Random(SEED)
    monkeypatch.chdir(root)
    outcomes = {"ok": 0, "refused": 0}
    try:
        for case in range(CASES):
            text = mutate(base, rng)
            (root / "params.yaml").write_text(text)
            code, err = _run_check()
            lines = err.strip().splitlines()
            if code == 0:
                outcomes["ok"] += 1
                assert not lines, (case, text, err)
            else:
                outcomes["refused"] += 1
                assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (case, code, err, text)
                assert "Traceback" not in err
            assert tree_digest(root) == before, (case, text)
    finally:
        runlock.release(root)
    # the mutations reach both ends: most are refused, some are harmless (e.g. a valid new value)
    print(outcomes)
    assert outcomes["refused"] > CASES // 2 and outcomes["ok"] > 5, outcomes


@pytest.mark.parametrize("case", range(3))
def test_a_refused_mutation_is_refused_the_same_way_by_a_real_process(tmp_path, monkeypatch, case):
    """The in-process runs above stand for real ones: the same text, the same line, exit 2."""
    import subprocess

    from auxsel import runlock

    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    rng = random.Random(1000 + case)
    root = copy_project(tmp_path / "p")
    monkeypatch.chdir(root)
    code = 0
    try:
        while code != 2:  # the first refused mutation of this seed
            (root / "params.yaml").write_text(mutate(base, rng))
            code, err = _run_check()
    finally:
        runlock.release(root)
    proc = subprocess.run([sys.executable, "-m", "stages.check"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr == err and err.startswith("error: ")
