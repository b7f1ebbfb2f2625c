"""The text pipeline with a frozen bottom under both tools (its own file: pytest-xdist runs it
beside the vision pipeline tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from test_pipeline import job_counts, make_project, metrics_of, ran_stages, sh

pytestmark = pytest.mark.slow


def test_text_feature_cache_is_shared_and_invalidated_under_both_tools(tmp_path_factory, raw_dir: Path):
    """Text with frozen layers: the features stage runs once per task, both tools give the same
    numbers from it, and a change of freeze_layers reruns the cache and everything after it."""
    from test_features import tiny_text_params

    params = tiny_text_params()
    params["candidates"] = ["sentiment_more"]
    params["tasks"] = {k: v for k, v in params["tasks"].items() if k in ("sentiment", "sentiment_more")}
    params["train"]["epochs"] = 1
    params["final"]["methods"] = ["single"]
    smk = make_project(tmp_path_factory.mktemp("smk-text"), raw_dir, params)
    dvc = make_project(tmp_path_factory.mktemp("dvc-text"), raw_dir, params, dvc=True)
    sh(smk, "snakemake", "--cores", "2")
    sh(dvc, "dvc", "repro")
    for root in (smk, dvc):
        meta = json.loads((root / "data/features/sentiment/meta.json").read_text())
        assert meta["key"]["mode"] == "hidden" and meta["key"]["freeze_layers"] == 4
        assert sorted(p.name for p in (root / "data/features").iterdir() if not p.name.startswith(".")) == [
            "sentiment", "sentiment_more"]
        prov = json.loads((root / "results/screen/sentiment_more/seed-0/provenance.json").read_text())
        assert "data/features/sentiment_more" in prov["inputs"]
    smk_metrics, dvc_metrics = metrics_of(smk, params), metrics_of(dvc, params)
    assert len(smk_metrics) > 4 and smk_metrics == dvc_metrics

    changed = json.loads(json.dumps(params))
    changed["model"]["freeze_layers"] = 3
    for root in (smk, dvc):
        (root / "params.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
    jobs = job_counts(sh(smk, "snakemake", "--cores", "2", "-n").stdout)
    # screens: the candidate's and the null candidate's
    assert jobs == {"prepare": 2, "features": 2, "baseline": 1, "screen": 2, "select": 1, "final": 1, "report": 1}
    would = {s.split("@")[0] for s in ran_stages(sh(dvc, "dvc", "repro", "--dry").stdout)}
    assert {"features", "baseline", "screen", "screen_null", "final"} <= would and "fetch" not in would
