"""The null candidate: the target's own training inputs with labels permuted across examples.

Every seed screens it beside the real candidates. It carries no information about the target
beyond its inputs and class balance, so its screen measures what the multitask machinery gives
by itself (a second head, more steps on the trunk, the merge): a candidate's gain over the null is
its effect as a task; its gain over single-task also credits it with the machinery's.
"""

from __future__ import annotations

import statistics

import torch

from auxsel.errors import AuxselError
from auxsel.params import NULL
from auxsel.tasks.tensors import TaskData


def null_size(candidate_sizes: list[int], target_size: int) -> int:
    """Sized like a typical candidate: the median of the candidates' training sizes (the target's
    when there are none)."""
    return int(statistics.median(candidate_sizes)) if candidate_sizes else target_size


def null_task(target: TaskData, n: int, seed: int) -> TaskData:
    """`n` training rows of `target`'s inputs (each input used ⌈n/N⌉ times at most, whole passes
    over a seeded permutation first) with the labels of other rows: a seeded permutation of the
    drawn rows' labels, so the class balance is the target's and no input keeps its own label
    except by chance."""
    train = target.require("train")
    total = target.size("train")
    if n < 1:
        raise AuxselError(f"null candidate of {target.name!r}: size {n} < 1")
    g = torch.Generator().manual_seed(seed)
    idx = torch.cat([torch.randperm(total, generator=g) for _ in range(-(-n // total))])[:n]
    rows = {k: v[idx] for k, v in train.items()}
    rows["label"] = rows["label"][torch.randperm(n, generator=g)]
    return TaskData(NULL, target.num_classes, target.metric, target.kind, {"train": rows})
