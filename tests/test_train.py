"""The shared training loop: seeding, history, best checkpoint, early stopping, failure messages."""

from __future__ import annotations

import math

import pytest
import torch

from auxsel.errors import AuxselError
from auxsel.methods import run_method
from auxsel.models import build_model
from auxsel.train import Run, TrainConfig, metric_value

from _auxsel_small import FAST, lenet, small_pool, target_tasks

CFG = dict(epochs=3, batch_size=16, lr=0.03, momentum=0.9)


def _single(seed: int, **cfg):
    pool = small_pool()
    m = build_model({"kind": "lenet"}, {"left": 10}, seed=seed)
    return run_method("single", m, {"left": pool["left"]}, "left", seed=seed, train={**CFG, **cfg}), m


def test_single_learns_and_records_history():
    r, m = _single(0, epochs=5)
    assert {"train", "dev"} == {h["split"] for h in r.history}
    assert set(r.history[0]) == {"epoch", "task", "split", "loss", "metric", "seconds"}
    dev = [h for h in r.history if h["split"] == "dev"]
    assert [h["epoch"] for h in dev] == [1, 2, 3, 4, 5]
    assert all(h["seconds"] > 0 and math.isfinite(h["loss"]) for h in r.history)
    # 10 classes: chance is 0.1; 300 canvases x 5 epochs reach well above it
    assert r.metrics["test"]["accuracy"] > 0.25
    # the kept state is the best dev epoch's, and the returned model holds it
    best = max(dev, key=lambda h: h["metric"])
    assert r.best_epoch == best["epoch"]
    assert r.metrics["dev"]["accuracy"] == pytest.approx(best["metric"], abs=1e-12)
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in r.state.items())
    assert [w["weight"] for w in r.weights] == [1.0] * 5


def test_same_seed_identical_different_seed_differs():
    a, _ = _single(5)
    b, _ = _single(5)
    c, _ = _single(6)
    strip = lambda rows: [{k: v for k, v in h.items() if k != "seconds"} for h in rows]
    assert strip(a.history) == strip(b.history) and a.metrics == b.metrics
    assert strip(a.history) != strip(c.history)


def test_early_stopping_on_dev():
    r, _ = _single(0, epochs=6, lr=1e-12, patience=2)  # nothing can improve after epoch 1
    assert r.epochs_run == 3 and r.best_epoch == 1


def test_nan_loss_names_task_and_epoch():
    pool = small_pool()
    m = build_model({"kind": "lenet"}, {"left": 10, "right": 10}, seed=0)
    with torch.no_grad():
        m.heads["right"].bias.fill_(float("nan"))
    with pytest.raises(AuxselError, match=r"task 'right', epoch 1"):
        run_method("uniform", m, {"left": pool["left"], "right": pool["right"]}, "left", seed=0, train=CFG)


def test_config_and_device_errors():
    with pytest.raises(AuxselError, match="unknown key"):
        TrainConfig.from_dict({"epochs": 2, "lr_schedule": "cos"})
    with pytest.raises(AuxselError, match="optimizer"):
        TrainConfig(optimizer="lion")
    if not torch.cuda.is_available():
        with pytest.raises(AuxselError, match="no CUDA"):
            _single(0, device="cuda")


def test_quiet_when_not_a_tty(capfd):
    _single(0, epochs=1)
    assert capfd.readouterr().err == ""


def test_metrics():
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    p = torch.tensor([0, 1, 1, 1, 2, 0])
    assert metric_value("accuracy", p, y, 3) == pytest.approx(4 / 6)
    # per class F1: 0: tp1 fp1 fn1 -> 0.5; 1: tp2 fp1 fn0 -> 0.8; 2: tp1 fp0 fn1 -> 2/3
    assert metric_value("macro_f1", p, y, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu_closely():
    a, _ = _single(0, epochs=1)
    b, _ = _single(0, epochs=1, device="cuda")
    assert abs(a.metrics["dev"]["accuracy"] - b.metrics["dev"]["accuracy"]) < 0.05


def _target_batches(method: str, aux: tuple[str, ...], run_seed: int, data_seed: int | None,
                    monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The target's training batches (row indices), in the order the optimiser stepped on them."""
    tasks = target_tasks(*aux)
    seen: list[list[int]] = []
    original = Run.step

    def step(run, task, idx, *args, **kwargs):
        if task == "left":
            seen.append(idx.tolist())
        return original(run, task, idx, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(Run, "step", step)
        run_method(method, lenet(tasks), tasks, "left", seed=run_seed, train={**FAST, "examples_per_task": 64},
                   eval_seed=3, data_seed=data_seed)
    return seen


def test_a_baseline_and_every_screen_of_one_seed_train_on_the_same_target_batches(monkeypatch):
    """Issue 14: with one data_seed (a seed's baseline and its screens), the target's sequence of
    training batches is the same whatever the candidate, method or run seed - a gain over the
    baseline is the candidate's effect, not data-order noise."""
    base = _target_batches("single", (), 101, 7, monkeypatch)
    assert len(base) == 2 * 64 // 16
    for method, aux, run_seed in (("uniform", ("left_more",), 202), ("avil", ("shuffled",), 303),
                                  ("diw", ("right",), 404), ("uniform", ("right", "shuffled"), 505)):
        assert _target_batches(method, aux, run_seed, 7, monkeypatch) == base, (method, aux)
    # another data seed draws other batches; without one each run seed draws its own
    assert _target_batches("single", (), 101, 8, monkeypatch) != base
    assert (_target_batches("uniform", ("left_more",), 202, None, monkeypatch)
            != _target_batches("uniform", ("left_more",), 203, None, monkeypatch))


def test_dev_holdout_splits_dev_by_role():
    """Issue 14: with train.dev_holdout the target's dev split is cut once per eval seed: the fits
    (αVIL's batch) and the best-epoch choice see one part, the holdout is only evaluated at the end."""
    from auxsel.methods.avil import Avil, AvilConfig
    from auxsel.train import evaluate, split_holdout

    pool = small_pool()
    cut = split_holdout(pool["left"], 0.5, eval_seed=9)
    assert (cut.size("dev"), cut.size("holdout")) == (150, 150)
    dev_rows = {row.numpy().tobytes() for row in cut.splits["dev"]["image"]}
    assert not any(row.numpy().tobytes() in dev_rows for row in cut.splits["holdout"]["image"])
    assert torch.equal(split_holdout(pool["left"], 0.5, 9).splits["holdout"]["label"], cut.splits["holdout"]["label"])
    assert not torch.equal(split_holdout(pool["left"], 0.5, 10).splits["holdout"]["image"], cut.splits["holdout"]["image"])
    tasks = target_tasks("left_more")
    cfg = TrainConfig(**{**FAST, "examples_per_task": 64, "dev_holdout": 0.5})
    run = Run(lenet(tasks), tasks, "left", cfg, seed=1, eval_seed=9)
    plan = Avil(AvilConfig(dev_batch=None), {t: 1.0 for t in tasks})
    plan.setup(run)
    fit_rows = {row.cpu().numpy().tobytes() for row in plan.dev_inputs["image"]}
    assert fit_rows == dev_rows  # αVIL fits on the dev part only, never on the holdout
    model = lenet(tasks)
    r = run_method("avil", model, tasks, "left", seed=1, train=cfg, eval_seed=9)
    assert set(r.metrics) == {"dev", "holdout", "test"}
    model.load_state_dict(r.state)
    assert r.metrics["holdout"]["accuracy"] == pytest.approx(evaluate(model, cut, "holdout")[1])
    assert r.metrics["dev"]["accuracy"] == pytest.approx(evaluate(model, cut, "dev")[1])
    assert max(h["metric"] for h in r.history if h["split"] == "dev") == pytest.approx(r.metrics["dev"]["accuracy"])
    with pytest.raises(AuxselError, match="dev_holdout 0.999 leaves no examples"):
        split_holdout(pool["left"], 0.999, 9)


def test_trace_records_the_judging_splits_every_epoch_and_changes_nothing():
    """train.trace (a diagnostic for bench/screen_length.py): every epoch adds the target's holdout
    and test rows; the run's state, dev curve and final metrics are bit-identical to an untraced run,
    and the traced row at the best epoch is the metric the run reports."""
    tasks = target_tasks("left_more")
    cfg = {**FAST, "epochs": 3, "examples_per_task": 64, "dev_holdout": 0.5}
    plain = run_method("avil", lenet(tasks), tasks, "left", seed=3, train=TrainConfig(**cfg), eval_seed=9)
    traced = run_method("avil", lenet(tasks), tasks, "left", seed=3, train=TrainConfig(**cfg, trace=True), eval_seed=9)
    assert all(torch.equal(plain.state[k], traced.state[k]) for k in plain.state)
    assert traced.metrics == plain.metrics
    def timeless(rows):  # wall seconds differ between any two runs
        return [{k: v for k, v in h.items() if k != "seconds"} for h in rows]

    assert timeless(h for h in traced.history if h["split"] in ("dev", "train")) == timeless(plain.history)
    for split in ("holdout", "test"):
        rows = [h for h in traced.history if h["split"] == split]
        assert [h["epoch"] for h in rows] == [1, 2, 3]
        best = next(h for h in rows if h["epoch"] == traced.best_epoch)
        assert best["metric"] == traced.metrics[split]["accuracy"]
        assert best["loss"] == pytest.approx(traced.metrics[split]["loss"])
    assert not any(h["split"] in ("holdout", "test") for h in plain.history)


def test_a_long_traced_run_reads_as_every_shorter_or_early_stopped_one():
    """bench/screen_length.py reads every screen length and stopping rule from one long traced run:
    a run of L epochs, or one stopped by train.patience, is that run's prefix — same stop, same best
    epoch, same holdout and test metrics, same weight."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from screen_length import curve_from_rows, read_at, stop_epoch

    tasks = target_tasks("left_more")
    cfg = {**FAST, "examples_per_task": 64, "dev_holdout": 0.5}
    long = run_method("avil", lenet(tasks), tasks, "left", seed=5, train=TrainConfig(**{**cfg, "epochs": 8, "trace": True}), eval_seed=9)
    curve = curve_from_rows(long.history, long.weights, "left")
    for extra in ({"epochs": 3}, {"epochs": 8, "patience": 1}):
        short = run_method("avil", lenet(tasks), tasks, "left", seed=5, train=TrainConfig(**{**cfg, **extra}), eval_seed=9)
        last = stop_epoch(curve["dev"], extra.get("patience"), extra["epochs"])
        assert last == short.epochs_run
        got = read_at(curve, last, "left_more")
        assert got["best_epoch"] == short.best_epoch
        assert (got["holdout"], got["test"]) == (short.metrics["holdout"]["accuracy"], short.metrics["test"]["accuracy"])
        assert got["weight"] == short.final_weights["left_more"]
        assert last < 8  # both end before the long run does
    assert stop_epoch([0.5, 0.6, 0.6, 0.55, 0.7], 2, 5) == 4 and stop_epoch([0.5, 0.6, 0.7], 2, 5) == 3
