"""Single-task baseline: results/baseline/<task>/seed-<S>/ (metrics, history, model)."""

from __future__ import annotations

from auxsel.errors import AuxselError
from stages import _common


def main() -> None:
    p = _common.parser(__doc__)
    p.add_argument("--task", required=True, help="the target task")
    p.add_argument("--seed", type=int, required=True)
    args = p.parse_args()
    params = _common.load_params(args.params)
    if args.task != params["target"]:
        raise AuxselError(f"baseline: --task {args.task!r} is not the target {params['target']!r}")
    out = _common.RESULTS / "baseline" / args.task / f"seed-{args.seed}"
    _common.training_run(params, "baseline", "single", [], args.seed, out)


if __name__ == "__main__":
    _common.run(main)
