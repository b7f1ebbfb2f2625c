# Params checks (before any job starts) and the helpers that turn params into file lists.
import copy
import glob
import os
import shlex
import sys

import yaml

from snakemake.utils import update_config

from auxsel import params as auxsel_params
from auxsel.errors import AuxselError

SCHEMA = str(Path(workflow.basedir) / "workflow/schemas/params.schema.yaml")

PROJECT_PARAMS = Path("params.yaml")


def resolved_params():
    """The params this run uses. `--configfile F` (a whole params file, e.g. configs/text.yaml)
    takes the place of params.yaml, and its pool is named after F unless F names one;
    `--config key=value` then overrides single keys (nested mappings are merged)."""
    files = [Path(f) for f in workflow.config_settings.configfiles]
    if files:
        resolved = {}
        for f in files:  # our reader: duplicate keys and YAML errors named with their line
            update_config(resolved, auxsel_params.read_yaml(f))
        named = [f for f in files if f.resolve() != PROJECT_PARAMS.resolve()]
        if named and "pool" not in resolved:
            resolved["pool"] = named[-1].stem
    else:
        resolved = auxsel_params.read_yaml(PROJECT_PARAMS)
    update_config(resolved, {k: typed(v) for k, v in workflow.config_settings.config.items()})
    return resolved


def typed(value):
    """Snakemake reads a nested --config value (`train={epochs: 5}`, `seeds=[0,1]`) with YAML's
    base loader, which keeps every scalar a string: read its scalars as YAML does in a file."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    if isinstance(value, str):
        parsed = yaml.safe_load(value) if value.strip() else value
        return parsed if isinstance(parsed, (bool, int, float)) or parsed is None else value
    return value


try:
    # the library's checks first: one line naming the key (duplicate keys, cross-key rules)
    _resolved = resolved_params()
    PARAMS = auxsel_params.validate(_resolved, auxsel_params.read_yaml(Path(SCHEMA)))
except AuxselError as exc:
    raise WorkflowError(str(exc)) from None
config.clear()
config.update(copy.deepcopy(_resolved))
validate(config, SCHEMA)


def params_file(resolved):
    """Where the stages read this run's params: params.yaml itself, or the resolved params
    written beside the pool's outputs by the latest invocation (a dry run too; each artifact's
    provenance keeps the params it was made with)."""
    if PROJECT_PARAMS.is_file() and resolved == auxsel_params.read_yaml(PROJECT_PARAMS):
        return str(PROJECT_PARAMS)
    path = Path(OUT or ".auxsel/") / ("params.yaml" if OUT else "params.resolved.yaml")
    header = "# written by Snakemake from the command line's --configfile/--config; do not edit"
    text = f"{header}\n{yaml.safe_dump(resolved, sort_keys=False)}"
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(path)
    return str(path)


# this pool's output folders: the project's own, or pools/<pool>/ (stages/_common.py: pool_root)
OUT = f"pools/{PARAMS['pool']}/" if PARAMS.get("pool") else ""


def P(path):
    """A path of this pool's outputs (prepared data, caches, results, logs)."""
    return f"{OUT}{path}"


PARAMS_FILE = params_file(_resolved)
# what every job's command adds (nothing for params.yaml: the same commands as dvc.yaml's)
PARAMS_ARG = "" if PARAMS_FILE == str(PROJECT_PARAMS) else f" --params {shlex.quote(PARAMS_FILE)}"

if workflow.is_main_process:
    # one runner per folder (auxsel.runlock): not beside a running dvc repro or another snakemake;
    # the jobs started here carry this run's token and go on
    from auxsel import runlock

    _dvc = runlock.dvc_running(Path("."))
    if _dvc:
        raise WorkflowError(f"{_dvc} is running in this project ({runlock.DVC_LOCK}); wait for it to finish or stop it, then rerun")
    try:
        runlock.acquire(Path("."), "snakemake")
    except AuxselError as exc:
        raise WorkflowError(str(exc)) from None
    # Snakemake sees a folder's time stamp, not the files inside: a finished output that fails its
    # manifest (truncated, corrupted, edited) is removed here, so its job and what reads it rerun
    sys.path.insert(0, workflow.basedir)
    from stages._common import remove_damaged, use_layout

    use_layout(PARAMS)
    for _line in remove_damaged():
        print(f"auxsel: {_line}", file=sys.stderr)

TASKS = sorted(PARAMS["tasks"])
TARGET = PARAMS["target"]
CANDIDATES = PARAMS["candidates"]
SEEDS = PARAMS["seeds"]
THREADS = PARAMS["threads"]
# training rules ask the cluster for a GPU only when the params ask for cuda
GPU = 1 if PARAMS["device"] == "cuda" else 0
# every job runs a module of stages/ that imports the auxsel package; all of both are code
# inputs of every rule (a change of the seed derivation or of an artifact format reruns all)
CODE = sorted(glob.glob("src/auxsel/**/*.py", recursive=True) + glob.glob("stages/*.py"))
# the params each training stage reads (Snakemake reruns a job when they change)
TRAIN_PARAMS = {k: PARAMS[k] for k in ("seed", "target", "model", "train", "device", "threads")}


def archive_of(task):
    spec = PARAMS["tasks"][task]
    if spec["source"] == "builtin":
        from auxsel.tasks.builtin import ARCHIVE_OF

        return [f"data/raw/{ARCHIVE_OF[spec['dataset']]}"]
    return []


def encoder_inputs():
    """The packaged encoder's folder, when params use one."""
    model = PARAMS["model"]
    if model["kind"] == "hf" and model["name_or_path"].startswith("builtin:"):
        return [f"data/raw/{model['name_or_path'].split(':', 1)[1]}"]
    return []


NULL = auxsel_params.NULL  # the null candidate (auxsel.tasks.null): screened every seed, never selected
SCREENED = [*CANDIDATES, NULL]


def screen_inputs(aux):
    """A screen reads the target's and the candidate's data; the null's is built from the
    target's, sized by the candidates' prepared row counts."""
    if aux == NULL:
        return task_data([TARGET]) + expand(P("data/prepared/{task}"), task=CANDIDATES)
    return task_data([TARGET, aux])


def task_data(tasks):
    """What a training job reads of its tasks: the prepared data and the feature cache."""
    return [P(f"data/{kind}/{t}") for t in tasks for kind in ("prepared", "features")]


def prepare_inputs(task):
    """A task's raw inputs: its archive folder, the encoder (text), or its local files."""
    # auxsel.params, not auxsel.tasks.sources: that one imports datasets (2 s at every start)
    return archive_of(task) + encoder_inputs() + auxsel_params.local_files(PARAMS["tasks"][task])


def final_inputs(method):
    """The selection only for the final methods that read it (stages.final.SELECTED): `single` and
    the `*_all` methods train on the target or the whole pool, so they can run beside the screens
    instead of waiting for the last one."""
    from stages.final import SELECTED

    return [P("results/selection.json")] if method in SELECTED else []


def final_methods():
    return PARAMS["final"]["methods"]


def all_outputs():
    return [
        *expand(P("data/prepared/{task}"), task=TASKS),
        *expand(P("data/features/{task}"), task=TASKS),
        P("results/selection.json"),
        *expand(P("results/final/{method}/seed-{seed}"), method=final_methods(), seed=SEEDS),
        P("results/report/index.html"),
    ]
