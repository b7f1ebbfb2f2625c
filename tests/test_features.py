"""The frozen-layer feature cache: same numbers as the live path, refused when stale.

Real data and encoder: Rotten Tomatoes snippets prepared by the prepare stage, MiniLM, the
features stage run as a subprocess exactly as Snakemake and DVC run it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from auxsel import features
from auxsel.errors import AuxselError
from auxsel.methods import run_method
from auxsel.models import build_model
from auxsel.tasks.load import load_task
from conftest import ROOT, copy_project, run_stage

SPLITS = ("train", "dev", "test")


def tiny_text_params(freeze_layers: int = 4, **model) -> dict:
    """configs/text.yaml cut to the target, the positive control and the shuffled labels."""
    p = yaml.safe_load((ROOT / "configs/text.yaml").read_text())
    p["candidates"] = ["sentiment_more", "shuffled"]
    p["tasks"] = {k: v for k, v in p["tasks"].items() if k in ("sentiment", "sentiment_more", "shuffled")}
    for name, spec in p["tasks"].items():
        spec.update(max_train=48 if name == "sentiment" else 64, max_dev=32, max_test=32)
    p["seeds"] = [0]
    p["train"]["epochs"] = 2
    p["final"]["methods"] = ["single", "avil"]
    p["model"].update(max_length=16, freeze_layers=freeze_layers, **model)
    return p


@pytest.fixture(scope="module")
def text_project(tmp_path_factory, raw_dir: Path) -> Path:
    root = copy_project(tmp_path_factory.mktemp("features"), raw_dir)
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_text_params(), sort_keys=False))
    for task in ("sentiment", "sentiment_more"):
        run_stage(root, "prepare", "--task", task)
        run_stage(root, "features", "--task", task)
    return root


def expected_key(root: Path, task: str, freeze_layers: int = 4, max_length: int = 16, mode: str = "hidden") -> dict:
    data_hash = json.loads((root / f"data/prepared/{task}/meta.json").read_text())["content_hash"]
    return features.cache_key("builtin:minilm", features.model_fingerprint(str(root / "data/raw/minilm")),
                              freeze_layers, max_length, data_hash, mode)


def live_and_cached(root: Path) -> tuple[dict, dict]:
    live, cached = {}, {}
    for task in ("sentiment", "sentiment_more"):
        splits = SPLITS if task == "sentiment" else ("train",)
        live[task] = load_task(root / f"data/prepared/{task}", splits)
        cached[task] = features.load(root / f"data/features/{task}", live[task], expected_key(root, task))
    return live, cached


def test_the_stage_writes_the_frozen_layers_output_once(text_project: Path):
    meta = json.loads((text_project / "data/features/sentiment/meta.json").read_text())
    assert meta["key"] == expected_key(text_project, "sentiment")
    hidden = meta["splits"]["train"]["hidden"]
    assert hidden["dtype"] == "float32" and hidden["shape"][0] == 48 and hidden["shape"][2] == 384
    assert hidden["shape"][1] <= 16  # trimmed to the split's longest snippet
    assert meta["splits"]["train"]["attention_mask"]["shape"] == hidden["shape"][:2]
    n_values = sum(math.prod(col["shape"]) for s in meta["splits"].values() for name, col in s.items() if name == "hidden")
    assert meta["bytes_in_ram"] >= 4 * n_values
    prov = json.loads((text_project / "data/features/sentiment/provenance.json").read_text())
    assert set(prov["outputs"]) == set(SPLITS)


def test_cached_path_gives_the_live_numbers(text_project: Path):
    spec = {"kind": "hf", "name_or_path": str(text_project / "data/raw/minilm"), "freeze_layers": 4}
    live, cached = live_and_cached(text_project)
    assert cached["sentiment"].kind == "hidden" and live["sentiment"].kind == "text"
    model = build_model(spec, {"sentiment": 2, "sentiment_more": 2}, seed=3).eval()
    assert any(p.requires_grad for p in model.trunk.parameters())  # trainable top layers
    with torch.no_grad():
        a = model.trunk(live["sentiment"].inputs("dev"))
        b = model.trunk(cached["sentiment"].inputs("dev"))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)

    train = dict(epochs=2, batch_size=16, optimizer="adamw", lr=1e-4)
    runs = [run_method("avil", build_model(spec, {"sentiment": 2, "sentiment_more": 2}, seed=3), tasks, "sentiment",
                       seed=11, train=train) for tasks in (live, cached)]
    for key in ("history", "weights"):
        rows_live, rows_cached = getattr(runs[0], key), getattr(runs[1], key)
        assert len(rows_live) == len(rows_cached) > 0
        for r, c in zip(rows_live, rows_cached):
            for field in ("loss", "metric", "weight", "alpha", "dev_loss_after"):
                if field in r:
                    assert c[field] == pytest.approx(r[field], rel=1e-5, abs=1e-5), (key, field, r, c)
    assert runs[0].final_weights["sentiment_more"] == pytest.approx(runs[1].final_weights["sentiment_more"], abs=1e-5)
    assert runs[0].metrics["test"]["accuracy"] == runs[1].metrics["test"]["accuracy"]


def test_a_stale_or_damaged_cache_is_refused(text_project: Path, tmp_path: Path):
    task = load_task(text_project / "data/prepared/sentiment", SPLITS)
    folder = text_project / "data/features/sentiment"
    with pytest.raises(AuxselError, match=r"stale feature cache \(freeze_layers: cache 4, expected 3\)"):
        features.load(folder, task, expected_key(text_project, "sentiment", freeze_layers=3))
    with pytest.raises(AuxselError, match=r"stale feature cache \(max_length: cache 16, expected 32\)"):
        features.load(folder, task, expected_key(text_project, "sentiment", max_length=32))
    other = json.loads((text_project / "data/prepared/sentiment_more/meta.json").read_text())["content_hash"]
    key = dict(expected_key(text_project, "sentiment"), data_hash=other)
    with pytest.raises(AuxselError, match="stale feature cache \\(data_hash"):
        features.load(folder, task, key)
    broken = tmp_path / "sentiment"
    broken.mkdir()
    (broken / "meta.json").write_text((folder / "meta.json").read_text())
    (broken / "train.safetensors").write_bytes((folder / "train.safetensors").read_bytes()[:100])
    with pytest.raises(AuxselError, match="train.safetensors: unreadable feature cache"):
        features.load(broken, task, expected_key(text_project, "sentiment"))


def test_frozen_encoder_mode_caches_pooled_embeddings_under_a_shared_mlp(text_project: Path):
    d = str(text_project / "data/raw/minilm")
    with pytest.raises(AuxselError, match="mlp_layers >= 1"):
        build_model({"kind": "hf", "name_or_path": d, "freeze_layers": 6}, {"sentiment": 2})
    spec = {"kind": "hf", "name_or_path": d, "freeze_layers": 6, "mlp_layers": 2, "mlp_width": 32}
    model = build_model(spec, {"sentiment": 2}, seed=0)
    trainable = [n for n, p in model.trunk.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("mlp.") for n in trainable)
    assert model.trunk.out_dim == 32 and features.mode_of(model.trunk) == "pooled"
    task = load_task(text_project / "data/prepared/sentiment", SPLITS)
    pooled = features.compute(model.trunk, task, "dev")
    assert set(pooled) == {"pooled"} and pooled["pooled"].shape == (32, 384)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.trunk(task.inputs("dev")), model.trunk({"pooled": pooled["pooled"]}),
                                   atol=1e-5, rtol=1e-5)


def test_nothing_to_cache_writes_only_meta(tmp_path: Path, raw_dir: Path):
    root = copy_project(tmp_path, raw_dir)
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_text_params(freeze_layers=0), sort_keys=False))
    run_stage(root, "prepare", "--task", "sentiment")
    out = run_stage(root, "features", "--task", "sentiment").stdout
    assert "features mode none" in out
    assert sorted(p.name for p in (root / "data/features/sentiment").iterdir()) == ["manifest.json", "meta.json", "provenance.json"]


def test_bf16_autocast_trains_the_cached_top_on_cpu(text_project: Path):
    """train.amp on a CPU: the cached path trains in bf16 (α fit included) to nearly the float32 numbers."""
    spec = {"kind": "hf", "name_or_path": str(text_project / "data/raw/minilm"), "freeze_layers": 4}
    _, cached = live_and_cached(text_project)
    runs = {amp: run_method("avil", build_model(spec, {"sentiment": 2, "sentiment_more": 2}, seed=3), cached, "sentiment",
                            seed=11, train=dict(epochs=1, batch_size=16, optimizer="adamw", lr=1e-4, amp=amp))
            for amp in (False, True)}
    fp32, bf16 = (runs[a].history[-1]["loss"] for a in (False, True))
    assert fp32 != bf16 and bf16 == pytest.approx(fp32, abs=0.02)  # rounded, not broken
    assert all(math.isfinite(w["weight"]) and math.isfinite(w["alpha"]) for w in runs[True].weights)
