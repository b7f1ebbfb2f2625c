"""The weighting methods: α-gradient, the merge, determinism, the controls, the interface."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from auxsel.errors import AuxselError
from auxsel.methods import METHODS, AvilConfig, DiwConfig, method_options, run_method
from auxsel.methods.avil import Avil
from auxsel.models import build_model
from auxsel.train import Run, TrainConfig

from _auxsel_small import FAST
from _auxsel_small import lenet as _model
from _auxsel_small import target_tasks as _tasks


def _deltas_after_updates(tasks, cfg: AvilConfig, dtype=torch.float32, seed=0):
    """A Run + Avil plan after one round of task updates: (plan, run, theta)."""
    model = _model(tasks, seed, dtype)
    run = Run(model, tasks, "left", TrainConfig(**{**FAST, "examples_per_task": 64}), seed)
    plan = Avil(cfg, {t: 1.0 for t in tasks})
    plan.setup(run)
    theta = plan.flat.get().clone()
    plan.task_updates(run, theta)
    return plan, run, theta


@pytest.mark.parametrize("heads,merge", [("alpha", "sum"), ("own", "mean")])
def test_alpha_gradient_matches_finite_differences(heads, merge):
    tasks = _tasks("left_more", "right")
    cfg = AvilConfig(heads=heads, merge=merge, dev_batch=64)
    plan, run, theta = _deltas_after_updates(tasks, cfg, dtype=torch.float64)
    assert plan.deltas.dtype == torch.float64 and plan.deltas.shape == (3, plan.flat.size)
    assert all(float(d.norm()) > 0 for d in plan.deltas)
    run.model.eval()
    obj = plan.objective(run, theta)
    alpha = torch.tensor([0.8, 1.3, 0.4], dtype=torch.float64, requires_grad=True)
    obj(alpha).backward()
    grad = alpha.grad.clone()
    h = 1e-7  # small: ReLU and max-pool kinks within ±h would bias the estimate
    fd = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for k in range(3):
            e = torch.zeros(3, dtype=torch.float64)
            e[k] = h
            fd[k] = (obj(alpha + e) - obj(alpha - e)) / (2 * h)
    rel = float((grad - fd).norm() / fd.norm())
    assert rel < 1e-3, (grad, fd)
    # the gradient is <grad_theta L_dev(theta'), delta_t> (scaled by the merge constant) on the mixed slice
    assert float(fd.abs().max()) > 0


def test_merge_with_alpha_one_is_theta_plus_sum_of_deltas():
    tasks = _tasks("left_more", "shuffled")
    cfg = AvilConfig.preset("avil_literal", {"alpha_steps": 0, "task_loss": "unit"})
    model = _model(tasks)
    run = Run(model, tasks, "left", TrainConfig(**{**FAST, "examples_per_task": 64}), 0)
    plan = Avil(cfg, {t: 1.0 for t in tasks})
    plan.setup(run)
    theta = plan.flat.get().clone()
    rows = plan.epoch(run, 1)
    d = plan.deltas
    expected = theta + d[0] + d[1] + d[2]
    assert torch.equal(plan.flat.get(), expected)
    assert [r["alpha"] for r in rows] == [1.0, 1.0, 1.0]
    assert [r["weight"] for r in rows] == [1.0, 1.0, 1.0]  # w += alpha - 1 = 0
    # the deltas are the task updates, taken from the same theta (the trunk moved for each task)
    s = plan.flat.shared
    assert all(float(d[k, :s].norm()) > 0 for k in range(3))
    assert rows[0]["cos_target"] == pytest.approx(1.0)


def _avil(seed, tasks, method="avil", options=None, **train):
    m = _model(tasks, seed)
    return run_method(method, m, tasks, "left", seed=seed, train={**FAST, **train}, options=options)


def test_same_seed_same_weights_and_metrics_different_seed_differs():
    tasks = _tasks("left_more", "shuffled")
    a = _avil(1, tasks, examples_per_task=160)
    b = _avil(1, tasks, examples_per_task=160)
    c = _avil(2, tasks, examples_per_task=160)
    key = lambda r: ([{k: v for k, v in w.items() if not k.endswith("seconds")} for w in r.weights], r.metrics)
    assert key(a) == key(b)
    assert key(a) != key(c)
    assert {"epoch", "task", "weight", "alpha", "delta_norm", "cos_target", "dev_loss_before",
            "dev_loss_after"} <= set(a.weights[0])


def test_every_method_runs_through_one_interface():
    tasks = _tasks("right")
    for method in METHODS:
        w = {"right": 0.5} if method == "fixed" else None
        r = run_method(method, _model(tasks), tasks, "left", seed=0, train={**FAST, "epochs": 1, "examples_per_task": 96},
                       weights=w)
        assert r.method == method and 0 <= r.metrics["test"]["accuracy"] <= 1
        assert all(math.isfinite(w["weight"]) for w in r.weights)
        expected = {"left"} if method == "single" else {"left", "right"}
        assert {w["task"] for w in r.weights} == expected
        if method == "fixed":
            assert r.final_weights == {"left": 1.0, "right": 0.5}


def test_interface_errors():
    tasks = _tasks("right")
    with pytest.raises(AuxselError, match="unknown method"):
        run_method("gradnorm", _model(tasks), tasks, "left", seed=0)
    with pytest.raises(AuxselError, match="no weight given"):
        run_method("fixed", _model(tasks), tasks, "left", seed=0, weights={})
    with pytest.raises(AuxselError, match="unknown key"):
        method_options("avil", {"alpha_step": 3})
    with pytest.raises(AuxselError, match="alpha_solver"):
        method_options("avil", {"alpha_solver": "newton"})
    with pytest.raises(AuxselError, match="not among the tasks"):
        run_method("single", _model(tasks), tasks, "nope", seed=0)
    assert method_options("avil_literal").alpha_solver == "adam"
    assert isinstance(method_options("diw", {"meta_lr": 1.0}), DiwConfig)


CONTROL_TRAIN = dict(epochs=8, batch_size=16, lr=0.03, momentum=0.9)


def test_controls_positive_control_on_top_shuffled_below_and_no_loss_vs_single():
    """A small real problem: target = left digit of 300 MultiMNIST canvases; candidates: the same task
    from a shifted source (positive control), the right digit, and left digits with labels shuffled
    per example on fresh images. Five seeds."""
    tasks = _tasks("left_more", "right", "shuffled")
    top = below = 0
    avil_dev, single_dev = [], []
    for seed in range(5):
        r = run_method("avil", _model(tasks, seed), tasks, "left", seed=seed, train=CONTROL_TRAIN)
        s = run_method("single", _model(tasks, seed), tasks, "left", seed=seed, train=CONTROL_TRAIN)
        w = r.final_weights
        for row in r.weights:
            assert math.isfinite(row["weight"]) and math.isfinite(row["alpha"])
        assert w["left"] == 1.0
        top += w["left_more"] > max(w["right"], w["shuffled"])
        below += w["shuffled"] < w["left_more"]
        avil_dev.append(r.metrics["dev"]["accuracy"])
        single_dev.append(s.metrics["dev"]["accuracy"])
    assert top >= 4, f"positive control on top in {top}/5 seeds"
    assert below >= 4, f"shuffled below the positive control in {below}/5 seeds"
    noise = 2 * statistics.stdev(single_dev) / math.sqrt(len(single_dev))
    assert statistics.mean(avil_dev) >= statistics.mean(single_dev) - noise, (avil_dev, single_dev)


def test_text_model_trains_under_avil_and_single():
    """The HF encoder through the same loop and the α fit (functional_call on a BERT model)."""
    import os
    from pathlib import Path

    from auxsel.tasks.tensors import TaskData

    d = os.environ.get("AUXSEL_MINILM_DIR")
    if not d or not (Path(d) / "config.json").is_file():
        pytest.fail("MiniLM folder not found: conftest fetches it and sets AUXSEL_MINILM_DIR")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(d)
    pos = ["a gripping, beautifully acted film", "warm, funny and wise", "a triumph", "sharp and moving"]
    neg = ["dull and far too long", "a tedious mess", "flat, lifeless acting", "a waste of a good cast"]

    def split(texts, labels):
        enc = tok(texts, padding="max_length", truncation=True, max_length=16, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "label": torch.tensor(labels)}

    texts, labels = pos + neg, [1] * 4 + [0] * 4
    sent = TaskData("sentiment", 2, metric="macro_f1", kind="text",
                    splits={"train": split(texts, labels), "dev": split(texts, labels), "test": split(texts, labels)})
    subj = TaskData("subjective", 2, kind="text", splits={"train": split(texts[::-1], labels)})
    tasks = {"sentiment": sent, "subjective": subj}
    spec = {"kind": "hf", "name_or_path": d, "freeze_layers": 5}
    train = dict(epochs=1, batch_size=4, lr=1e-3, optimizer="adamw")
    for method in ("single", "avil"):
        m = build_model(spec, {t: 2 for t in tasks}, seed=0)
        r = run_method(method, m, tasks, "sentiment", seed=0, train=train)
        assert 0 <= r.metrics["test"]["macro_f1"] <= 1
        assert all(math.isfinite(w["weight"]) for w in r.weights)
