"""`single`, `uniform` and `fixed`: one shared optimiser, task batches interleaved by a seeded
sampler, each task's loss multiplied by a constant weight."""

from __future__ import annotations

from typing import Any

from auxsel.train import Run, make_optimizer


class Interleaved:
    """Train `tasks` with constant loss weights. A task with weight 0 is skipped (no batches)."""

    def __init__(self, weights: dict[str, float]) -> None:
        self.weights = dict(weights)

    def setup(self, run: Run) -> None:
        self.opt = make_optimizer(run.model.parameters(), run.cfg)
        self.active = [t for t, w in self.weights.items() if w != 0]

    def epoch(self, run: Run, epoch: int) -> list[dict[str, Any]]:
        for task, idx in run.interleaved(self.active):
            run.step(task, idx, self.opt, self.weights[task])
        return [{"epoch": epoch, "task": t, "weight": float(w), "alpha": float("nan")} for t, w in self.weights.items()]
