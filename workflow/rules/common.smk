# Params checks (before any job starts) and the helpers that turn params into file lists.
import glob
import sys

import yaml

from auxsel import params as auxsel_params
from auxsel.errors import AuxselError

SCHEMA = str(Path(workflow.basedir) / "workflow/schemas/params.schema.yaml")

try:
    # the library's checks first: one line naming the key (duplicate keys, cross-key rules)
    _checked = auxsel_params.load(Path(workflow.configfiles[0]), Path(SCHEMA))
except AuxselError as exc:
    raise WorkflowError(str(exc)) from None
if auxsel_params.read_yaml(Path(workflow.configfiles[0])) != {k: v for k, v in config.items()}:
    raise WorkflowError(
        "params: --config/--configfile overrides are not supported; edit params.yaml "
        "(it is the one source of truth for Snakemake and DVC)"
    )
validate(config, SCHEMA)
PARAMS = _checked

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
    from stages._common import remove_damaged

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


NULL = "_null"  # the null candidate (auxsel.tasks.null): screened every seed, never selected
SCREENED = [*CANDIDATES, NULL]


def screen_inputs(aux):
    """A screen reads the target's and the candidate's data; the null's is built from the
    target's, sized by the candidates' prepared row counts."""
    if aux == NULL:
        return task_data([TARGET]) + expand("data/prepared/{task}", task=CANDIDATES)
    return task_data([TARGET, aux])


def task_data(tasks):
    """What a training job reads of its tasks: the prepared data and the feature cache."""
    return [f"data/{kind}/{t}" for t in tasks for kind in ("prepared", "features")]


def prepare_inputs(task):
    """A task's raw inputs: its archive folder, the encoder (text), or its local files."""
    spec = PARAMS["tasks"][task]
    inputs = archive_of(task) + encoder_inputs()
    if spec["source"] == "files":
        files = spec["data_files"]
        inputs += list(files.values()) if isinstance(files, dict) else [files] if isinstance(files, str) else files
    return inputs


def final_methods():
    return PARAMS["final"]["methods"]


def all_outputs():
    return [
        *expand("data/prepared/{task}", task=TASKS),
        *expand("data/features/{task}", task=TASKS),
        "results/selection.json",
        *expand("results/final/{method}/seed-{seed}", method=final_methods(), seed=SEEDS),
        "results/report/index.html",
    ]
