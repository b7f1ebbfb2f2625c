"""The dev examples' share of a gain's variance (auxsel.dev_sampling) and how the rule uses it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from auxsel import dev_sampling
from auxsel.errors import AuxselError
from auxsel.select import Rule, gain_stats, summarise
from auxsel.train import metric_value


@pytest.mark.parametrize("kind", ["accuracy", "macro_f1"])
def test_weighted_metric_with_unit_weights_is_the_metric(kind):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    preds = np.where(rng.random(200) < 0.7, labels, rng.integers(0, 4, 200))  # class 3: predicted, never a label
    got = dev_sampling.weighted_metric(kind, np.ones((2, 200)), labels, preds, 4)
    want = metric_value(kind, torch.tensor(preds), torch.tensor(labels), 4)
    assert got == pytest.approx([want, want], abs=1e-12)
    # integer weights are repeated examples
    w = rng.integers(0, 3, 200)
    rep = metric_value(kind, torch.tensor(np.repeat(preds, w)), torch.tensor(np.repeat(labels, w)), 4)
    assert dev_sampling.weighted_metric(kind, w[None, :].astype(float), labels, preds, 4)[0] == pytest.approx(rep, abs=1e-12)


def _screens(n_dev: int, seeds: int, shared_rows: bool, rng) -> tuple[dict, dict]:
    """Candidate and reference answers of `seeds` seeds, each judged on half of one dev split
    (shared_rows) or on halves of disjoint dev examples; the candidate is right where an example's
    fixed 'easiness' for it is high, so seeds that share examples share its luck on them."""
    easy = rng.random(n_dev)
    labels = rng.integers(0, 2, n_dev)
    cand, ref = {}, {}
    for s in range(seeds):
        rows = (np.sort(rng.permutation(n_dev)[: n_dev // 2]) if shared_rows
                else np.arange(s * n_dev // (2 * seeds), (s + 1) * n_dev // (2 * seeds)))
        right_c = rng.random(len(rows)) < 0.1 + 0.8 * easy[rows]
        right_r = rng.random(len(rows)) < 0.9 - 0.8 * easy[rows]
        cand[s] = {"row": rows, "label": labels[rows], "pred": np.where(right_c, labels[rows], 1 - labels[rows])}
        ref[s] = {"row": rows, "label": labels[rows], "pred": np.where(right_r, labels[rows], 1 - labels[rows])}
    return cand, ref


def test_shared_variance_is_the_covariance_the_seeds_share_through_the_examples():
    rng = np.random.default_rng(1)
    n_dev = 800
    cand, ref = _screens(n_dev, 4, True, rng)
    weights = dev_sampling.example_weights(n_dev, seed=3, replicates=4000)
    got = dev_sampling.shared_variance(dev_sampling.seed_covariance(
        dev_sampling.replicate_gains(cand, ref, weights, "accuracy", 2)))
    # the plug-in covariance of two seeds' mean differences over the examples both judged
    d = {s: (cand[s]["pred"] == cand[s]["label"]).astype(float) - (ref[s]["pred"] == ref[s]["label"]) for s in cand}
    cov = []
    for s in cand:
        for t in cand:
            if s != t:
                common, i, j = np.intersect1d(cand[s]["row"], cand[t]["row"], return_indices=True)
                cov.append(float(((d[s][i] - d[s].mean()) * (d[t][j] - d[t].mean())).sum()) / (len(d[s]) * len(d[t])))
    want = float(np.mean(cov))
    assert want > 1e-4 and got == pytest.approx(want, rel=0.1)
    # seeds that judge disjoint examples share nothing
    cand, ref = _screens(n_dev, 4, False, rng)
    apart = dev_sampling.shared_variance(dev_sampling.seed_covariance(
        dev_sampling.replicate_gains(cand, ref, weights, "accuracy", 2)))
    assert apart < 0.25 * want  # bootstrap noise only
    # one seed: no pair, nothing shared
    assert dev_sampling.shared_variance(np.ones((1, 1))) == 0.0


def test_runs_judged_on_different_rows_are_refused():
    rng = np.random.default_rng(2)
    cand, ref = _screens(200, 2, True, rng)
    ref[1] = {**ref[1], "row": ref[1]["row"][::-1].copy()}
    with pytest.raises(AuxselError, match="screen x seed 1: the run and its reference were judged on different holdout"):
        dev_sampling.replicate_gains(cand, ref, dev_sampling.example_weights(200, 0, 10), "accuracy", 2, where="screen x")


def test_the_shared_variance_widens_the_test_and_can_drop_a_candidate():
    base = {s: 0.70 for s in range(5)}
    dev = {"a": {s: 0.72 + 0.002 * (s - 2) for s in range(5)}}  # +0.02, sd 0.0032
    rule = Rule(variance="candidate", dev_variance=True)
    alone = gain_stats(base, dev, rule, 0.001)["a"]
    shared = gain_stats(base, dev, rule, 0.001, {"a": 0.01 ** 2})["a"]
    assert shared["gain_se"] ** 2 == pytest.approx(alone["gain_se"] ** 2 + 1e-4, rel=1e-12)
    assert shared["dev_se"] == pytest.approx(0.01) and alone["dev_se"] is None  # not measured
    assert shared["df"] == alone["df"] == 4 and shared["p_value"] > alone["p_value"]
    weight = {"a": {s: 1.0 for s in range(5)}}
    null = {s: 0.70 for s in range(5)}
    kept = summarise(base, dev, weight, rule, null_dev=null, null_weight=0.5)[0]
    wide = summarise(base, dev, weight, rule, null_dev=null, null_weight=0.5, shared={"a": 1e-4}, null_shared={"a": 2.25e-4})[0]
    off = summarise(base, dev, weight, Rule(variance="candidate", dev_variance=False), null_dev=null, null_weight=0.5,
                    shared={"a": 1e-4}, null_shared={"a": 2.25e-4})[0]
    assert kept["selected"] and off["selected"] and off["null_dev_se"] == pytest.approx(0.015)  # shown, not tested
    assert not wide["selected"] and wide["null_dev_se"] == pytest.approx(0.015) and wide["dev_se"] == pytest.approx(0.01)
    assert "gain over the null candidate +0.0200 not above min_gain" in wide["reason"]
    assert math.isclose(wide["null_p_holm"], wide["null_p_value"])


def test_the_power_statement_shows_the_dev_examples_share_and_more_seeds_cannot_beat_it():
    from auxsel.report import power_sentence
    from auxsel.select import power_summary

    ref = {s: 0.70 for s in range(5)}
    dev = {a: {s: 0.70 + 0.01 * ((s + i) % 3 - 1) for s in range(5)} for i, a in enumerate("abc")}
    seeds_only = power_summary(ref, dev, Rule(dev_variance=False), 0.001, 0.01, 0.8, shared=0.006 ** 2)
    with_dev = power_summary(ref, dev, Rule(dev_variance=True), 0.001, 0.01, 0.8, shared=0.006 ** 2)
    assert seeds_only["dev_se"] == with_dev["dev_se"] == pytest.approx(0.006)
    assert seeds_only["seeds_for_detect"] is not None and with_dev["seeds_for_detect"] is None  # 0.006 alone hides +0.01
    assert with_dev["detectable_gain"] > seeds_only["detectable_gain"]
    assert ("The dev examples, which every seed shares, add a standard error of 0.0060 to a typical mean gain over the "
            "null that no number of seeds shrinks; the test includes it (select.dev_variance).") in power_sentence(with_dev)
    assert "would need a larger dev split: no number of seeds gets past" in power_sentence(with_dev)
    assert "the test leaves it out (select.dev_variance: false)." in power_sentence(seeds_only)
    assert "dev examples" not in power_sentence(power_summary(ref, dev, Rule(), 0.001))  # not measured: not claimed
