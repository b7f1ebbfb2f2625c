"""Pairwise screening of one candidate: αVIL on {target, aux} -> results/screen/<aux>/seed-<S>/.

`--aux _null` screens the null candidate (auxsel.tasks.null): the target's inputs with permuted
labels, built in the job from the target's prepared data, sized like the median candidate."""

from __future__ import annotations

from auxsel.errors import AuxselError
from auxsel.params import NULL
from stages import _common


def main() -> None:
    p = _common.parser(__doc__)
    p.add_argument("--aux", required=True, help="the candidate auxiliary task")
    p.add_argument("--seed", type=int, required=True)
    args = p.parse_args()
    params = _common.load_params(args.params)
    if args.aux not in params["candidates"] and args.aux != NULL:
        raise AuxselError(f"screen: --aux {args.aux!r} is not among the candidates {params['candidates']} "
                          f"(or {NULL}, the null candidate)")
    out = _common.RESULTS / "screen" / args.aux / f"seed-{args.seed}"
    _common.training_run(params, "screen", params["screen"]["method"], [args.aux], args.seed, out, save_model=False)


if __name__ == "__main__":
    _common.run(main)
