"""Check params.yaml and take the project for this run: .auxsel/params.ok.

DVC removes a stage's outputs before its command runs, so a params mistake found by the stage
itself comes too late: the outputs of the last good run are gone. This stage runs first (every
other stage depends on its output, and it always runs), validates params.yaml with the same checks
Snakemake runs at startup, and is refused while another runner (Snakemake) holds the project; when
it fails, `dvc repro` stops before any other stage has removed anything. Its output's content never
changes, so passing it reruns nothing downstream. Run it by hand to check a params file.

It also writes `.auxsel/inputs/<task>.json`: the sha256 of each local data file the task reads
(tasks with `source: files`; `{}` for the others). dvc.yaml's `prepare@<task>` depends on that
file, since DVC cannot template a per-task list of paths into a stage's deps: an edited CSV reruns
its task's chain, and nothing else (Snakemake declares the files themselves).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from auxsel.artifacts import file_sha256, write_json
from auxsel.errors import AuxselError
from auxsel.params import local_files

from stages import _common

STAMP = Path(".auxsel/params.ok")
STAMP_TEXT = "params.yaml passed auxsel's checks (the content is constant: a pass reruns nothing)\n"
INPUTS = Path(".auxsel/inputs")


def write_input_digests(params: dict[str, Any]) -> None:
    """`.auxsel/inputs/<task>.json` per task, rewritten only when a digest changes (and removed
    for tasks no longer in params)."""
    keep = set()
    for task, spec in params["tasks"].items():
        files = {}
        for f in local_files(spec):
            if not Path(f).is_file():
                raise AuxselError(f"tasks.{task}.data_files: {f} does not exist")
            files[f] = file_sha256(Path(f))
        path = INPUTS / f"{task}.json"
        keep.add(path.name)
        record = {"task": task, "files": files}
        try:
            same = json.loads(path.read_text()) == record
        except (OSError, ValueError):
            same = False
        if not same:
            write_json(record, path)
    for stale in INPUTS.glob("*.json") if INPUTS.is_dir() else []:
        if stale.name not in keep:
            stale.unlink()


def main() -> None:
    args = _common.parser(__doc__).parse_args()
    params = _common.load_params(args.params)
    if params.get("pool") and os.environ.get("DVC_STAGE"):
        raise AuxselError(f"params: pool: {params['pool']!r} puts outputs under pools/{params['pool']}/, but dvc.yaml's "
                          "outputs are the project's own data/ and results/; under DVC each pool is an experiment: "
                          f"remove `pool` and run `dvc exp run -n {params['pool']}` (README: Pools side by side)")
    STAMP.parent.mkdir(parents=True, exist_ok=True)
    write_input_digests(params)
    if not STAMP.is_file() or STAMP.read_text() != STAMP_TEXT:
        STAMP.write_text(STAMP_TEXT)
    print(f"{args.params}: ok (target {params['target']}, {len(params['candidates'])} candidates, "
          f"seeds {params['seeds']}, {len(params['tasks'])} tasks)")


if __name__ == "__main__":
    _common.run(main)
