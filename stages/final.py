"""Final training of the target with one method: results/final/<method>/seed-<S>/.

Methods: single; uniform_all / diw_all / avil_literal_all / avil_all (every candidate);
fixed (selected candidates at their selected weights); avil (selected candidates, starting from
the selected weights); uniform_selected (selected candidates, weight 1).
"""

from __future__ import annotations

import json

from stages import _common

ALL = {"uniform_all": "uniform", "diw_all": "diw", "avil_literal_all": "avil_literal", "avil_all": "avil"}
SELECTED = {"fixed": "fixed", "avil": "avil", "uniform_selected": "uniform"}
FINAL_METHODS = ["single", *ALL, *SELECTED]


def main() -> None:
    p = _common.parser(__doc__)
    p.add_argument("--method", required=True, choices=FINAL_METHODS)
    p.add_argument("--seed", type=int, required=True)
    args = p.parse_args()
    params = _common.load_params(args.params)
    out = _common.RESULTS / "final" / args.method / f"seed-{args.seed}"
    weights = None
    if args.method == "single":
        method, aux = "single", []
    elif args.method in ALL:
        method, aux = ALL[args.method], list(params["candidates"])
    else:
        selection = json.loads(_common.verified_selection().read_text())
        aux = selection["selected"]
        method = SELECTED[args.method] if aux else "single"
        weights = {params["target"]: 1.0, **selection["weights"]} if aux and method != "uniform" else None
    _common.training_run(params, "final", method, aux, args.seed, out, weights=weights, label=args.method)


if __name__ == "__main__":
    _common.run(main)
