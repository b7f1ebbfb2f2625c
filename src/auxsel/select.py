"""Screening results -> the selection: which candidates to keep, with what weight.

Per candidate the statistics are paired by seed: the gain of a seed is the target's dev metric
when screened with the candidate minus the single-task baseline's dev metric with the same seed
(same initial weights, same sequence of target batches), so seed-to-seed variation of the target
itself cancels. Only dev numbers are read.

The decision is a stated test: per candidate, one-sided H0 "mean gain ≤ min_gain" against
H1 "mean gain > min_gain" (Student t), with the family-wise error rate over all candidates held
at `level` by Holm's step-down procedure — five useless candidates each tested at 5 % would keep
one of them up to 23 % of the time. The standard deviation of a candidate's gain is by default
moderated (`variance: moderated`, Smyth 2004): its own sample variance (n - 1 df) shrunk toward a
prior fitted to all candidates' variances, with d + d0 degrees of freedom. At 5 seeds a
candidate's own sd has 4 df, and the one-sided t at Holm's first step (0.1 / 5) then needs the
mean gain to be 1.34 sds; pooling gives 16 df but lets one unstable candidate hide a steady one
(on the default pool the sds over the null ranged from 0.009 to 0.035). The prior's d0 is large
when the candidates' variances differ no more than sampling makes them (then it is the pooled
variance) and small when one is truly wilder, so it takes the pooled df only where pooling is
right. Measured on 20-seed screens of four pool/target pairs, resampled to 5 seeds
(bench/selection_power.py, bench/README.md §8), it keeps the positive control more often than
`candidate` at the same family-wise error. The sd is floored at `sd_floor` so a candidate whose
gains happen to be equal does not get a zero-width interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, special, stats

from auxsel.errors import AuxselError

COLUMNS = [
    "aux", "n_seeds", "weight_mean", "weight_std", "gain_mean", "gain_std", "gain_se", "dev_se", "df", "t", "p_value",
    "p_holm", "gain_ci_low", "gain_ci_high", "null_gain_mean", "null_gain_se", "null_dev_se", "null_p_value", "null_p_holm",
    "selected", "rank", "reason",
]


VARIANCES = ("candidate", "pooled", "moderated")


@dataclass
class Rule:
    """Keep a candidate whose gain is above `min_gain` by a one-sided t test that survives Holm's
    correction at family-wise `level`, and whose mean weight exceeds `min_weight` (None: the null
    candidate's mean weight - the share a task that cannot help still gets; 0 without a null); rank by mean
    gain; keep at most `top_k`. `confidence` sets the two-sided interval that is reported; `detect_gain`
    and `power` only set what the power statement reports (power_summary), not the decision.
    `dev_variance` adds the variance the seeds share through the one dev split (auxsel.dev_sampling)
    to each mean gain's."""

    min_gain: float = 0.0
    min_weight: float | None = None
    top_k: int | None = None
    confidence: float = 0.9
    level: float = 0.1
    variance: str = "moderated"
    sd_floor: float | None = None
    detect_gain: float = 0.01
    power: float = 0.8
    dev_variance: bool = False

    def __post_init__(self) -> None:
        if self.variance not in VARIANCES:
            raise AuxselError(f"select.variance must be one of {', '.join(VARIANCES)}, not {self.variance!r}")
        if not 0 < self.level < 1:
            raise AuxselError(f"select.level must be in (0, 1), not {self.level}")
        if not self.detect_gain > 0:
            raise AuxselError(f"select.detect_gain must be > 0, not {self.detect_gain}")
        if not 0 < self.power < 1:
            raise AuxselError(f"select.power must be in (0, 1), not {self.power}")
        if self.sd_floor is not None and not self.sd_floor >= 0:
            raise AuxselError(f"select.sd_floor must be >= 0, not {self.sd_floor}")


def holm(p: list[float]) -> list[float]:
    """Holm step-down adjusted p-values (reject where adjusted p ≤ level)."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [1.0] * m
    running = 0.0
    for j, i in enumerate(order):
        running = max(running, min(1.0, (m - j) * p[i]))
        out[i] = running
    return out


def _trigamma_inverse(y: float) -> float:
    """x with trigamma(x) = y (Newton's method as in limma's trigammaInverse)."""
    if y > 1e7:
        return 1.0 / math.sqrt(y)
    if y < 1e-6:
        return 1.0 / y
    x = 0.5 + 1.0 / y
    for _ in range(50):
        tri = float(special.polygamma(1, x))
        step = tri * (1 - tri / y) / float(special.polygamma(2, x))
        x += step
        if -step / x < 1e-8:
            break
    return x


def prior_variance(variances: list[float], df: int, least: float = 1e-12) -> tuple[float, float]:
    """Smyth's (2004) empirical-Bayes prior of the candidates' gain variances, each with `df` degrees
    of freedom: (prior variance s0², prior degrees of freedom d0), fitted by moments of the log
    variances (limma's fitFDist). d0 = inf when the variances spread no more than sampling alone
    would make them (then the moderated variance is the pooled one); d0 near 0 when they truly differ.
    Variances are clipped at `least` (e.g. the squared sd floor): one candidate whose gains happen to
    be equal would otherwise read as an infinitely spread pool."""
    z = np.log(np.maximum(np.asarray(variances, dtype=float), max(least, 1e-300)))
    e = z - special.digamma(df / 2) + math.log(df / 2)
    excess = float(np.var(e, ddof=1)) - float(special.polygamma(1, df / 2)) if len(e) > 1 else 0.0
    if excess <= 0:
        return float(np.exp(e.mean())), math.inf
    d0 = 2 * _trigamma_inverse(excess)
    return float(np.exp(e.mean() + special.digamma(d0 / 2) - math.log(d0 / 2))), d0


def _spread(gains: dict[str, np.ndarray], rule: Rule, floor: float) -> dict[str, tuple[float, float]]:
    """(standard deviation, degrees of freedom) of one seed's gain, per candidate."""
    if rule.variance == "moderated":
        own = {a: float(g.var(ddof=1)) for a, g in gains.items() if len(g) > 1}
        dfs = {len(gains[a]) - 1 for a in own}
        if len(own) < 2 or len(dfs) != 1:  # nothing to borrow from (or unequal seeds): each its own
            return _spread(gains, Rule(variance="candidate"), floor)
        d = dfs.pop()
        s0, d0 = prior_variance(list(own.values()), d, least=max(floor, 1e-6) ** 2)
        out = {}
        for a, g in gains.items():
            if a not in own:
                out[a] = (math.nan, 0)
            elif math.isinf(d0):
                out[a] = (max(math.sqrt(s0), floor), d * len(own))  # the pooled variance and its df
            else:
                out[a] = (max(math.sqrt((d0 * s0 + d * own[a]) / (d0 + d)), floor), d0 + d)
        return out
    if rule.variance == "pooled":
        ss = sum(float(((g - g.mean()) ** 2).sum()) for g in gains.values() if len(g) > 1)
        df = sum(len(g) - 1 for g in gains.values())
        sd = math.sqrt(ss / df) if df > 0 else math.nan
        return {a: (max(sd, floor) if df > 0 else math.nan, df) for a in gains}
    out = {}
    for a, g in gains.items():
        df = len(g) - 1
        out[a] = (max(float(g.std(ddof=1)), floor) if df > 0 else math.nan, df)
    return out


def paired_gains(reference: dict[int, float], screen_dev: dict[str, dict[int, float]]) -> dict[str, np.ndarray]:
    """Per candidate, its metric minus the reference's on each seed both have, in seed order."""
    return {aux: np.array([by_seed[s] - reference[s] for s in sorted(set(by_seed) & set(reference))], dtype=float)
            for aux, by_seed in screen_dev.items()}


def gain_stats(reference: dict[int, float], screen_dev: dict[str, dict[int, float]], rule: Rule,
               floor: float, shared: dict[str, float] | None = None) -> dict[str, dict[str, Any]]:
    """Per candidate: the paired gains over `reference` (per seed), their mean, standard error,
    degrees of freedom, one-sided t and p against min_gain, Holm-adjusted p, and the interval.
    `shared`: per candidate, the variance its seeds' gains share through the dev examples
    (auxsel.dev_sampling.shared_variance), reported as `dev_se` (None when not measured) and, with
    rule.dev_variance, added to the squared standard error; the degrees of freedom stay the seeds'
    (the bootstrap term rests on hundreds of examples, so this errs wide)."""
    gains = paired_gains(reference, screen_dev)
    spread = _spread(gains, rule, floor)
    shared = shared or {}
    out = {}
    for aux, g in gains.items():
        n = len(g)
        sd, df = spread[aux]
        mean = float(g.mean()) if n else math.nan
        dev_var = float(shared.get(aux, math.nan))
        if df > 0 and n > 0:
            se = math.sqrt(sd ** 2 / n + (dev_var if rule.dev_variance and math.isfinite(dev_var) else 0.0))
            t = (mean - rule.min_gain) / se if se > 0 else (math.inf if mean > rule.min_gain else -math.inf)
            p = float(stats.t.sf(t, df))
            half = float(stats.t.ppf(0.5 + rule.confidence / 2, df)) * se
            low, high = mean - half, mean + half
        else:  # one seed: nothing can be claimed (written to JSON as null)
            se, t, p, low, high = math.inf, math.nan, 1.0, -math.inf, math.inf
        out[aux] = {"n_seeds": n, "gain_mean": mean, "gain_std": float(g.std(ddof=1)) if n > 1 else 0.0,
                    "gain_se": se, "dev_se": math.sqrt(dev_var) if math.isfinite(dev_var) else None, "df": df, "t": t, "p_value": p, "gain_ci_low": low, "gain_ci_high": high}
    for aux, adj in zip(out, holm([r["p_value"] for r in out.values()])):
        out[aux]["p_holm"] = adj
    return out


def detectable_gain(sd: float, n: int, df: float, alpha: float, power: float = 0.8, shared: float = 0.0) -> float:
    """The true mean gain that a one-sided t test at `alpha` on n seeds' gains of standard deviation
    `sd` (with `df` degrees of freedom) detects with probability `power` (noncentral t); `shared`
    is the variance the seeds share through the dev examples, which more seeds do not shrink."""
    if n < 2 or not df > 0 or not sd > 0:
        return math.inf
    crit = float(stats.t.ppf(1 - alpha, df))
    se = math.sqrt(sd ** 2 / n + shared)
    return float(optimize.brentq(lambda d: float(stats.nct.sf(crit, df, d / se)) - power, 0.0, 50 * se + 1.0))


def power_summary(reference: dict[int, float], screen_dev: dict[str, dict[int, float]], rule: Rule,
                  floor: float, detect: float = 0.01, power: float = 0.8, shared: float = math.nan) -> dict[str, Any]:
    """What this run's seeds can detect: the candidates' typical gain spread (pooled sd of their
    gains over `reference`), the true gain a lone helper among them needs to be kept with
    probability `power` (tested at level/m, the first step of Holm's procedure over m candidates,
    with the rule's degrees of freedom), and how many seeds a gain of `detect` would need.

    Why: at 5 seeds the default pool's positive control (+1.9 points over the null on test) is
    kept in about a third of seed draws (bench/README.md §8); a researcher must see that "not
    kept" here can mean "not measurable". `shared` (the candidates' mean dev-example variance,
    auxsel.dev_sampling; nan: not measured) is reported as `dev_se`; with rule.dev_variance it sets
    a floor under the standard error that no number of seeds removes, and when it alone hides
    `detect`, seeds_for_detect is None: only a larger dev split helps."""
    gains = paired_gains(reference, screen_dev)
    m = len(gains)
    n = min((len(g) for g in gains.values()), default=0)
    if m == 0 or n < 2:
        return {"seeds": n, "candidates": m, "sd": math.nan, "dev_se": math.sqrt(shared), "dev_in_test": bool(rule.dev_variance),
                "power": power, "detectable_gain": math.inf,
                "detect": detect, "seeds_for_detect": None}
    pooled = _spread(gains, Rule(variance="pooled"), floor)
    sd = next(iter(pooled.values()))[0]
    d0 = math.inf  # moderated: the prior's degrees of freedom, a property of how the candidates' spreads differ
    if rule.variance == "moderated" and len({len(g) for g in gains.values()}) == 1:
        d0 = prior_variance([float(g.var(ddof=1)) for g in gains.values()], n - 1, least=max(floor, 1e-6) ** 2)[1]

    def df(k: int) -> float:
        if rule.variance == "candidate":
            return k - 1
        if rule.variance == "moderated" and math.isfinite(d0):
            return min(k - 1 + d0, m * (k - 1))
        return m * (k - 1)

    alpha = rule.level / m
    used = shared if rule.dev_variance and math.isfinite(shared) else 0.0
    need = next((k for k in range(2, 1001) if detectable_gain(sd, k, df(k), alpha, power, used) <= detect), None)
    return {"seeds": n, "candidates": m, "sd": sd, "dev_se": math.sqrt(shared), "dev_in_test": bool(rule.dev_variance),
            "df": df(n), "power": power,
            "alpha": alpha, "detectable_gain": detectable_gain(sd, n, df(n), alpha, power, used), "detect": detect,
            "seeds_for_detect": need}


def summarise(
    baseline_dev: dict[int, float],
    screen_dev: dict[str, dict[int, float]],
    screen_weight: dict[str, dict[int, float]],
    rule: Rule,
    sd_floor: float = 0.0,
    null_dev: dict[int, float] | None = None,
    null_weight: float | None = None,
    shared: dict[str, float] | None = None,
    null_shared: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """One row per candidate (COLUMNS), ranked; `selected` per the rule, `reason` names every
    condition that failed. `sd_floor` is used when the rule has none (e.g. one dev example's worth
    of the metric). With `null_dev` (the null candidate's screens, per seed) the test is against the
    null - the reference that shares the multitask training's dynamics, so its paired gains are far
    less noisy than those over single-task (bench/README.md §8) - and the mean gain over
    single-task must still exceed min_gain (a candidate that beats a harmful null but not the
    target alone is not kept); the p-values over single-task are reported either way. `shared` and
    `null_shared`: per candidate, the dev-example variance of its mean gain over single-task and
    over the null (auxsel.dev_sampling), reported always and added to the seeds' when rule.dev_variance."""
    floor = rule.sd_floor if rule.sd_floor is not None else sd_floor
    if rule.min_weight is not None:
        min_w, min_w_name = rule.min_weight, "min_weight"
    elif null_weight is not None:
        min_w, min_w_name = null_weight, "the null candidate's weight"
    else:
        min_w, min_w_name = 0.0, "0 (no null candidate)"
    single = gain_stats(baseline_dev, screen_dev, rule, floor, shared)
    null = gain_stats(null_dev, screen_dev, rule, floor, null_shared) if null_dev is not None else None
    rows = []
    for aux, st in single.items():
        w = np.array([screen_weight[aux][s] for s in sorted(screen_weight[aux])], dtype=float)
        row = {"aux": aux, **st, "weight_mean": float(w.mean()), "weight_std": float(w.std(ddof=1)) if len(w) > 1 else 0.0}
        nul = null[aux] if null is not None else {}
        row.update(null_gain_mean=nul.get("gain_mean", math.nan), null_gain_se=nul.get("gain_se", math.nan),
                   null_dev_se=nul.get("dev_se"),
                   null_p_value=nul.get("p_value", math.nan), null_p_holm=nul.get("p_holm", math.nan))
        rows.append(row)
    rows.sort(key=lambda r: (-r["gain_mean"], r["aux"]))
    kept = 0
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
        failed = []
        if row["df"] < 1:
            failed.append("one seed: no test possible (give select >= 2 seeds)")
        elif null is None:  # no null screens: the test is against single-task
            if not row["p_holm"] <= rule.level:
                failed.append(f"gain {row['gain_mean']:+.4f} not above min_gain {rule.min_gain:+.4f} at family-wise "
                              f"level {rule.level:g} (Holm p {row['p_holm']:.3f})")
        else:
            if not row["null_p_holm"] <= rule.level:
                failed.append(f"gain over the null candidate {row['null_gain_mean']:+.4f} not above min_gain at "
                              f"family-wise level {rule.level:g} (Holm p {row['null_p_holm']:.3f})")
            if not row["gain_mean"] > rule.min_gain:
                failed.append(f"mean gain over single-task {row['gain_mean']:+.4f} <= min_gain {rule.min_gain:+.4f}")
        if not row["weight_mean"] > min_w:
            failed.append(f"weight {row['weight_mean']:.3f} <= {min_w_name} {min_w:.3f}")
        if not failed and rule.top_k is not None and kept >= rule.top_k:
            failed.append(f"beyond top_k={rule.top_k}")
        row["selected"] = not failed
        if failed:
            row["reason"] = "; ".join(failed)
        else:
            kept += 1
            if null is None:
                row["reason"] = (f"gain above {rule.min_gain:+.4f} (Holm p {row['p_holm']:.3f} <= {rule.level:g}) "
                                 f"and weight above {min_w_name} {min_w:.3f}")
            else:
                row["reason"] = (f"gain over the null above {rule.min_gain:+.4f} (Holm p {row['null_p_holm']:.3f} <= "
                                 f"{rule.level:g}), mean gain over single-task {row['gain_mean']:+.4f} and weight above "
                                 f"{min_w_name} {min_w:.3f}")
    return [{k: r[k] for k in COLUMNS} for r in rows]
