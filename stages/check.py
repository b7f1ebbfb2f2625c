"""Check params.yaml and take the project for this run: .auxsel/params.ok.

DVC removes a stage's outputs before its command runs, so a params mistake found by the stage
itself comes too late: the outputs of the last good run are gone. This stage runs first (every
other stage depends on its output, and it always runs), validates params.yaml with the same checks
Snakemake runs at startup, and is refused while another runner (Snakemake) holds the project; when
it fails, `dvc repro` stops before any other stage has removed anything. Its output's content never
changes, so passing it reruns nothing downstream. Run it by hand to check a params file.
"""

from __future__ import annotations

import os
from pathlib import Path

from auxsel.errors import AuxselError

from stages import _common

STAMP = Path(".auxsel/params.ok")
STAMP_TEXT = "params.yaml passed auxsel's checks (the content is constant: a pass reruns nothing)\n"


def main() -> None:
    args = _common.parser(__doc__).parse_args()
    params = _common.load_params(args.params)
    if params.get("pool") and os.environ.get("DVC_STAGE"):
        raise AuxselError(f"params: pool: {params['pool']!r} puts outputs under pools/{params['pool']}/, but dvc.yaml's "
                          "outputs are the project's own data/ and results/; under DVC each pool is an experiment: "
                          f"remove `pool` and run `dvc exp run -n {params['pool']}` (README: Pools side by side)")
    STAMP.parent.mkdir(parents=True, exist_ok=True)
    if not STAMP.is_file() or STAMP.read_text() != STAMP_TEXT:
        STAMP.write_text(STAMP_TEXT)
    print(f"{args.params}: ok (target {params['target']}, {len(params['candidates'])} candidates, "
          f"seeds {params['seeds']}, {len(params['tasks'])} tasks)")


if __name__ == "__main__":
    _common.run(main)
