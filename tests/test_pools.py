"""Pools side by side (issue 15 items 3 and 6): `snakemake --configfile F --config k=v` runs a pool
under pools/<name>/ with the params Snakemake resolved; DVC runs the same pool as an experiment;
the README's example pool (configs/my_pool.yaml, from a folder of CSV files) runs end to end."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import ROOT
from test_pipeline import job_counts, make_project, ran_stages, sh

pytestmark = pytest.mark.slow

def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def metrics(results: Path) -> dict:
    return {(str(d.parent.relative_to(results)), r["split"], r["metric"]): r["value"]
            for d in sorted(results.rglob("metrics.parquet")) for r in pq.read_table(d).to_pylist()}


@pytest.fixture(scope="module")
def example_project(tmp_path_factory, raw_dir: Path) -> Path:
    """A git + DVC project holding the default params.yaml, the example pool's files written by
    examples/make_my_pool.py from the real archive, and nothing run yet."""
    root = make_project(tmp_path_factory.mktemp("pools"), raw_dir, yaml.safe_load((ROOT / "params.yaml").read_text()), dvc=True)
    shutil.copy(ROOT / ".gitignore", root / ".gitignore")
    shutil.copytree(ROOT / "examples", root / "examples", ignore=shutil.ignore_patterns("__pycache__", "my_pool"))
    subprocess.run([sys.executable, "examples/make_my_pool.py", "--raw", str(raw_dir)], cwd=root, check=True, capture_output=True)
    assert len(list((root / "examples/my_pool").glob("*.csv"))) == 4
    return root


def test_resolved_params_name_the_pool_and_reach_every_job(example_project: Path):
    root = example_project
    # a whole params file: its pool is named after it; outputs, logs and the params the jobs read
    # are under pools/text/ (dry run: nothing is trained)
    dry = sh(root, "snakemake", "-n", "-p", "--configfile", "configs/text.yaml").stdout
    outputs = {o.strip() for line in dry.splitlines() if line.strip().startswith("output:")
               for o in line.split(":", 1)[1].split(",")}
    assert outputs and all(o.startswith(("pools/text/", "data/raw/")) for o in outputs), sorted(outputs)[:5]
    assert "pools/text/results/selection.json" in outputs and "pools/text/data/prepared/sentiment" in outputs
    commands = [line for line in dry.splitlines() if "python -m stages." in line]
    assert commands and all("--params pools/text/params.yaml" in c for c in commands)
    written = yaml.safe_load((root / "pools/text/params.yaml").read_text())
    assert written == dict(yaml.safe_load((ROOT / "configs/text.yaml").read_text()), pool="text")
    # --config: nested values keep their YAML types (else epochs '1' would be refused); without a
    # pool, the project's own layout
    dry = sh(root, "snakemake", "-n", "-p", "--config", "train={epochs: 1}", "seeds=[3]").stdout
    assert "results/baseline/left/seed-3" in dry and "--params .auxsel/params.resolved.yaml" in dry
    assert "pools/" not in dry
    resolved = yaml.safe_load((root / ".auxsel/params.resolved.yaml").read_text())
    assert resolved["train"]["epochs"] == 1 and resolved["seeds"] == [3] and "pool" not in resolved
    # a bad override is named like a bad params.yaml, before any job
    proc = sh(root, "snakemake", "-n", "--config", "train={epochs: x}", check=False)
    assert proc.returncode != 0 and "params: train.epochs: 'x' is not of type 'integer'" in proc.stdout + proc.stderr
    assert not (root / "results").exists()


def tiny_text_pool() -> dict:
    """configs/text.yaml cut to the target and its positive control, 4 of 6 layers frozen; the
    positive control read from the example pool's CSV (source: files)."""
    from test_features import tiny_text_params

    params = tiny_text_params()
    params["candidates"] = ["sentiment_more"]
    params["tasks"] = {k: v for k, v in params["tasks"].items() if k == "sentiment"}
    params["tasks"]["sentiment_more"] = {
        "source": "files", "data_files": "examples/my_pool/reviews_more.csv", "inputs": ["text"], "label": "label",
        "label_names": ["rotten", "fresh"], "num_classes": 2, "max_train": 64, "max_dev": 32, "max_test": 32}
    params["train"]["epochs"] = 1
    params["final"]["methods"] = ["single"]
    return params


def test_a_pool_runs_beside_another_under_both_tools_with_the_same_numbers(example_project: Path):
    """A pool file run by `snakemake --configfile` (under pools/<name>/) and the same file run by
    `dvc exp run` (the project's own results/) in one project (README: Pools side by side): the
    same numbers from the same frozen-layer caches, neither run touches the other's outputs, and
    a change of freeze_layers reruns the cache and everything after it under both tools."""
    root = example_project
    params = tiny_text_pool()
    (root / "configs/tiny_text.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, "snakemake", "--cores", "2", "--configfile", "configs/tiny_text.yaml")
    pool = root / "pools/tiny_text"
    assert not (root / "results").exists() and (pool / "results/report/index.html").is_file()
    assert yaml.safe_load((pool / "params.yaml").read_text()) == dict(params, pool="tiny_text")  # what the jobs read
    before = digest(pool)
    # DVC: the README's recipe for a pool file, as an experiment
    shutil.copy(root / "configs/tiny_text.yaml", root / "params.yaml")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "tiny text pool")
    sh(root, "dvc", "exp", "run", "-n", "tiny_text")
    assert "tiny_text" in sh(root, "dvc", "exp", "show", "--csv").stdout
    for data, results in ((pool / "data", pool / "results"), (root / "data", root / "results")):
        meta = json.loads((data / "features/sentiment/meta.json").read_text())
        assert meta["key"]["mode"] == "hidden" and meta["key"]["freeze_layers"] == 4
        assert sorted(p.name for p in (data / "features").iterdir() if not p.name.startswith(".")) == ["sentiment", "sentiment_more"]
        prov = json.loads((results / "screen/sentiment_more/seed-0/provenance.json").read_text())
        assert any(i.endswith("data/features/sentiment_more") for i in prov["inputs"]), prov["inputs"]
    prov = json.loads((pool / "results/screen/sentiment_more/seed-0/provenance.json").read_text())
    assert "pools/tiny_text/params.yaml" in prov["argv"]  # the jobs read the params Snakemake resolved
    smk, dvc = metrics(pool / "results"), metrics(root / "results")
    assert len(smk) > 4 and smk == dvc
    assert json.loads((pool / "results/selection.json").read_text()) == json.loads((root / "results/selection.json").read_text())
    assert digest(pool) == before

    # freeze_layers changes: the cache and everything after it rerun, under both tools
    jobs = job_counts(sh(root, "snakemake", "-n", "--configfile", "configs/tiny_text.yaml",
                         "--config", "model={freeze_layers: 3}").stdout)
    # screens: the candidate's and the null candidate's
    assert jobs == {"prepare": 2, "features": 2, "baseline": 1, "screen": 2, "select": 1, "final": 1, "report": 1}
    changed = json.loads(json.dumps(params))
    changed["model"]["freeze_layers"] = 3
    (root / "params.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
    would = {s.split("@")[0] for s in ran_stages(sh(root, "dvc", "repro", "--dry").stdout)}
    assert {"features", "baseline", "screen", "screen_null", "final"} <= would and "fetch" not in would

    # a pool name is Snakemake's layout; DVC refuses it before any stage removes an output
    (root / "params.yaml").write_text(yaml.safe_dump(dict(params, pool="other"), sort_keys=False))
    results = digest(root / "results")
    proc = sh(root, "dvc", "repro", check=False)
    assert proc.returncode != 0
    assert "params: pool: 'other' puts outputs under pools/other/" in proc.stdout + proc.stderr
    assert digest(root / "results") == results
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    # a task's own data files are inputs under both tools: one edited row reruns that task's chain
    csv = root / "examples/my_pool/reviews_more.csv"
    rows = csv.read_text().splitlines(keepends=True)
    csv.write_text("".join(rows[:1] + rows[2:]))
    # (DVC's runs re-linked data/raw, which Snakemake also reads: it reruns more; the reason names the file)
    dry = sh(root, "snakemake", "-n", "--configfile", "configs/tiny_text.yaml").stdout
    reasons = [b for b in dry.split("\nrule ")[1:] if b.startswith("prepare:") and "task=sentiment_more" in b]
    assert reasons and "examples/my_pool/reviews_more.csv" in reasons[0].split("reason:", 1)[1].splitlines()[0], reasons
    out = sh(root, "dvc", "repro", "prepare@sentiment_more").stdout
    assert ran_stages(out) - {"check"} == {"prepare@sentiment_more"}, out
    inputs = json.loads((root / ".auxsel/inputs/sentiment_more.json").read_text())
    assert inputs["files"] == {"examples/my_pool/reviews_more.csv": hashlib.sha256(csv.read_bytes()).hexdigest()}
    assert ran_stages(sh(root, "dvc", "repro", "prepare@sentiment_more").stdout) == {"check"}  # same data: nothing reruns


def test_the_example_pool_runs_end_to_end(example_project: Path):
    """README's "Your own pool": configs/my_pool.yaml on the CSV files examples/make_my_pool.py
    wrote, by the README's command (one seed, 2 epochs, one final method and fewer examples here,
    as --config overrides)."""
    root = example_project
    small = {"max_train": 150, "max_dev": 60, "max_test": 60}  # fewer examples for the encoder to embed
    tasks = "tasks={" + ", ".join(f"{t}: {json.dumps(small)}" for t in ("reviews", "reviews_more", "same_film",
                                                                         "reviews_other_shuffled")) + "}"
    sh(root, "snakemake", "--cores", "2", "--configfile", "configs/my_pool.yaml", "--config", "seeds=[0]",
       "final={methods: [single]}", "train={epochs: 2}", tasks)
    pool = root / "pools/my_pool"
    params = yaml.safe_load((root / "configs/my_pool.yaml").read_text())
    resolved = yaml.safe_load((pool / "params.yaml").read_text())  # what the jobs read
    expected = dict(params, pool="my_pool", seeds=[0], final=dict(params["final"], methods=["single"]), train=dict(params["train"], epochs=2),
                    tasks={t: dict(spec, **small) for t, spec in params["tasks"].items()})  # nested mappings merged
    assert resolved == expected
    assert json.loads((pool / "data/prepared/reviews_more/meta.json").read_text())["counts"]["train"] == 150
    meta = json.loads((pool / "data/features/reviews/meta.json").read_text())
    assert meta["key"]["mode"] == "pooled" and meta["key"]["freeze_layers"] == 6
    # the text-pair task: two columns tokenised as one pair ([CLS] a [SEP] b [SEP])
    ids = pq.read_table(pool / "data/prepared/same_film/train.parquet").column("input_ids").to_pylist()[0]
    assert ids[0] == 101 and ids.count(102) == 2, ids
    selection = json.loads((pool / "results/selection.json").read_text())
    assert sorted(c["aux"] for c in selection["candidates"]) == sorted(params["candidates"])
    assert all(c["reason"] or c["selected"] for c in selection["candidates"])
    report = json.loads((pool / "results/report/metrics.json").read_text())
    assert report["target"] == "reviews" and set(report["test"]) == {"single"}
