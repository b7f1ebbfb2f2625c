"""The report's figures, drawn with matplotlib's Agg canvas (no display, no pyplot state) and
returned as PNG bytes. PNG metadata carries no version or date, so the same numbers give the same
bytes."""

from __future__ import annotations

import io
import math
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 110
KEEP, DROP = "#1b7837", "#8c8c8c"
TARGET_COLOR = "#000000"
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def task_colors(tasks: list[str], target: str) -> dict[str, str]:
    """One colour per task, the same in every figure; the target in black."""
    colors = {target: TARGET_COLOR}
    for i, t in enumerate(t for t in tasks if t != target):
        colors[t] = PALETTE[i % len(PALETTE)]
    return colors


def gains_forest(candidates: list[dict[str, Any]], metric: str, confidence: float, min_gain: float, target: str) -> bytes:
    """Forest plot: each candidate's mean paired dev gain with its interval, kept ones in green."""
    n = max(len(candidates), 1)
    fig = _figure(8.0, 1.6 + 0.55 * n)
    ax = fig.add_subplot()
    finite = [v for c in candidates for v in (c["gain_ci_low"], c["gain_ci_high"], c["gain_mean"]) if math.isfinite(v)]
    finite += [0.0, min_gain]
    lo, hi = min(finite), max(finite)
    pad = 0.08 * (hi - lo or 1.0)
    lo, hi = lo - pad, hi + pad
    for i, c in enumerate(candidates):
        y = n - 1 - i
        color = KEEP if c["selected"] else DROP
        low = c["gain_ci_low"] if math.isfinite(c["gain_ci_low"]) else lo
        high = c["gain_ci_high"] if math.isfinite(c["gain_ci_high"]) else hi
        ax.plot([low, high], [y, y], color=color, lw=2.2, solid_capstyle="butt")
        for end, finite_end, marker in ((low, math.isfinite(c["gain_ci_low"]), "<"), (high, math.isfinite(c["gain_ci_high"]), ">")):
            ax.plot([end], [y], marker="|" if finite_end else marker, color=color, ms=10 if finite_end else 7)
        ax.plot([c["gain_mean"]], [y], "o", color=color, ms=8, mfc=color if c["selected"] else "white", mew=2)
    ax.axvline(0.0, color="#444444", lw=1)
    if min_gain != 0.0:
        ax.axvline(min_gain, color=KEEP, lw=1, ls="--", label=f"min_gain = {min_gain:+.4f}")
    ax.set_xlim(lo, hi)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_yticks(range(n))
    ax.set_yticklabels([f"{c['aux']}  (w = {c['weight_mean']:.2f} ± {c['weight_std']:.2f})" for c in reversed(candidates)])
    ax.set_xlabel(f"gain in {target} dev {metric} over the single-task baseline (absolute, paired by seed)")
    ax.set_title(f"Screening: mean gain with {confidence:.0%} Student-t interval over seeds")
    ax.plot([], [], "o-", color=KEEP, label="selected")
    ax.plot([], [], "o-", color=DROP, mfc="white", label="dropped")
    ax.legend(loc="best", fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    return png(fig)


def trajectories(panels: dict[str, dict[str, dict[str, list[float]]]], colors: dict[str, str], target: str, title: str,
                 ylabel: str = "task weight (target's held at 1)") -> bytes:
    """Weights per epoch, one panel per run, one line per task (mean over seeds) with a band from
    the lowest to the highest seed; one legend for all panels."""
    names = list(panels) or ["(no run with learned weights)"]
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = _figure(max(7.5, 4.0 * ncols + 2.2), 3.2 * nrows + 0.9)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    legend: dict[str, Any] = {}
    seeds = 0
    for ax, name in zip(axes.flat, names):
        for task, band in panels.get(name, {}).items():
            color = colors.get(task, "#7f7f7f")
            seeds = max([seeds, *band["n"]])
            if task == target:
                (line,) = ax.plot(band["epoch"], band["mean"], color=color, ls="--", lw=1.2)
                legend.setdefault(f"{task} (target)", line)
                continue
            (line,) = ax.plot(band["epoch"], band["mean"], color=color, marker="o", ms=3, lw=1.8)
            legend.setdefault(task, line)
            if max(band["n"]) > 1:
                ax.fill_between(band["epoch"], band["low"], band["high"], color=color, alpha=0.18, lw=0)
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if not panels.get(name):
            ax.text(0.5, 0.5, "no final run with learned weights", ha="center", va="center", transform=ax.transAxes, color="#666666")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    if legend:
        fig.legend(list(legend.values()), list(legend), loc="outside right upper", title="task", fontsize="small")
    fig.suptitle(f"{title}\nline: mean over {seeds} seeds; band: lowest to highest seed", fontsize="medium")
    return png(fig)


def final_comparison(rows: list[dict[str, Any]], metric: str, target: str) -> bytes:
    """Test metric per final method: each seed as a dot, mean ± std as a bar; the best starred."""
    n = max(len(rows), 1)
    fig = _figure(1.6 + 1.25 * n, 4.6)
    ax = fig.add_subplot()
    single = next((r for r in rows if r["method"] == "single"), None)
    if single is not None:
        ax.axhline(single["mean"], color="#444444", lw=1, ls=":", label="single-task mean")
    for i, r in enumerate(rows):
        color = KEEP if r["best"] else "#1f77b4"
        k = len(r["values"])
        xs = [i + (j - (k - 1) / 2) * 0.08 for j in range(k)]
        ax.plot(xs, r["values"], "o", color=color, alpha=0.45, ms=5)
        err = 0.0 if math.isnan(r["std"]) else r["std"]
        ax.errorbar([i], [r["mean"]], yerr=[err], fmt="*" if r["best"] else "s", color=color, ms=14 if r["best"] else 8, capsize=6, lw=2)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["method"] + ("\n(best)" if r["best"] else "") for r in rows])
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_xlabel("final method")
    ax.set_ylabel(f"{target} test {metric} (fraction; mean ± std over seeds)")
    ax.set_title(f"Final runs: {target} test {metric} (dots: seeds; star: best mean)")
    ax.grid(axis="y", alpha=0.3)
    if single is not None:
        ax.legend(fontsize="small", loc="best")
    return png(fig)
