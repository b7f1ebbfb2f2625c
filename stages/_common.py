"""What every stage shares: argument parsing, params loading, the one-line error exit.

The file layout lives here and in the workflow files, never in the library.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auxsel import params as params_mod
from auxsel.errors import AuxselError

SCHEMA = Path("workflow/schemas/params.schema.yaml")
RAW = Path("data/raw")  # the fetched archives: shared by every pool of the project
# where this pool's outputs live: the project itself, or pools/<pool>/ when params name a pool
# (set by load_params; Snakemake's rules name the same folders, workflow/rules/common.smk)
PREPARED = Path("data/prepared")
FEATURES = Path("data/features")
RESULTS = Path("results")


def pool_root(params: dict[str, Any]) -> Path:
    """`pool: NAME` keeps a pool's prepared data, caches and results under pools/NAME/, so pools
    run side by side in one project; without it, the project's own data/ and results/."""
    return Path("pools") / params["pool"] if params.get("pool") else Path(".")


def use_layout(params: dict[str, Any]) -> None:
    global PREPARED, FEATURES, RESULTS
    root = pool_root(params)
    PREPARED, FEATURES, RESULTS = root / "data/prepared", root / "data/features", root / "results"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    return p


def load_params(path: Path) -> dict[str, Any]:
    """The validated params; this pool's output folders follow them (use_layout)."""
    params = params_mod.load(path, SCHEMA)
    use_layout(params)
    return params


def task_stage(description: str) -> tuple[argparse.Namespace, dict[str, Any]]:
    """(args, params) of a per-task stage (`--task T`); T must be defined under `tasks`."""
    p = parser(description)
    p.add_argument("--task", required=True)
    args = p.parse_args()
    params = load_params(args.params)
    if args.task not in params["tasks"]:
        raise AuxselError(f"task {args.task!r} is not defined under tasks in {args.params}")
    return args, params


def resolve_model_path(name_or_path: str) -> str:
    """`builtin:<archive>` names a fetched archive folder; anything else goes to Hugging Face as is."""
    if name_or_path.startswith("builtin:"):
        return str(RAW / name_or_path.split(":", 1)[1])
    return name_or_path


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    os.environ.setdefault("OMP_NUM_THREADS", str(n))


def runner_name() -> str:
    """Who is running this stage, for the lock's holder record."""
    module = "stages." + Path(sys.argv[0]).stem
    if os.environ.get("DVC_STAGE"):
        return f"dvc repro (stage {os.environ['DVC_STAGE']}, {module})"
    return f"python -m {module}"


def run(main: Callable[[], None]) -> None:
    """Run a stage; user errors become one line on stderr and exit code 2. A stage started by a
    runner (Snakemake) goes on under its lock; one started by hand or by DVC takes the lock itself,
    so it is refused while another runner works in this folder."""
    from auxsel import runlock

    try:
        runlock.enter(Path("."), runner_name())
        main()
    except AuxselError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def model_spec(params: dict[str, Any]) -> dict[str, Any]:
    """params.model -> the library's model spec (paths resolved here, not in the library)."""
    m = params["model"]
    if m["kind"] == "lenet":
        return {"kind": "lenet", "hidden": m["hidden"], "channels": list(m["channels"]), "normalize": m["normalize"]}
    if m["kind"] == "resnet":
        return {"kind": "resnet", "widths": list(m["widths"]), "blocks": m["blocks"], "normalize": m["normalize"]}
    return {"kind": "hf", "name_or_path": resolve_model_path(m["name_or_path"]), "freeze_layers": m["freeze_layers"],
            "mlp_layers": m["mlp_layers"], "mlp_width": m["mlp_width"]}


def caches_features(params: dict[str, Any]) -> bool:
    """Whether the params ask for a frozen bottom computed once (the features stage's output)."""
    m = params["model"]
    return m["kind"] == "hf" and m["freeze_layers"] > 0 and m["cache_features"]


def frozen_encoder(params: dict[str, Any]):
    """The pretrained encoder whose frozen bottom the features stage computes (None: nothing to cache)."""
    if not caches_features(params):
        return None
    from auxsel.models.text import TextEncoder

    spec = model_spec(params)
    return TextEncoder(spec["name_or_path"], spec["freeze_layers"], mlp_layers=max(1, spec["mlp_layers"]),
                       mlp_width=spec["mlp_width"])


def feature_key(params: dict[str, Any], task: str, mode: str | None = None) -> dict[str, Any]:
    """What a task's feature cache must have been computed for: encoder (name + weight hash),
    frozen layers, max_length and the prepared data's content hash."""
    from auxsel import features

    m = params["model"]
    if not caches_features(params):
        return features.cache_key(m.get("name_or_path", ""), "", 0, m.get("max_length", 0), "", "none")
    meta_path = PREPARED / task / "meta.json"
    try:
        data_hash = json.loads(meta_path.read_text())["content_hash"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AuxselError(f"{meta_path}: unreadable ({type(exc).__name__}); rerun the prepare stage") from exc
    return features.cache_key(m["name_or_path"], features.model_fingerprint(resolve_model_path(m["name_or_path"])),
                              m["freeze_layers"], m["max_length"], data_hash, mode)


def verify_prepared(folder: Path, splits: tuple[str, ...], ext: str = "parquet", stage: str = "prepare") -> None:
    """The prepared (or feature) files are byte for byte what their stage wrote (the sha256s in
    its provenance.json), so a truncated or corrupted file stops the stage before any training."""
    from auxsel.artifacts import file_sha256

    prov = folder / "provenance.json"
    if not prov.is_file():
        return  # a hand-made folder: load_task's own checks still apply
    try:
        recorded = json.loads(prov.read_text()).get("outputs") or {}
    except (OSError, ValueError, AttributeError) as exc:
        raise AuxselError(f"{prov}: unreadable ({type(exc).__name__}); rerun the {stage} stage") from exc
    for split in splits:
        path = folder / f"{split}.{ext}"
        want = recorded.get(split)
        if want and path.is_file():
            got = file_sha256(path)
            if got != want:
                raise AuxselError(f"{path}: sha256 {got} is not the {want} that the {stage} stage wrote "
                                  f"(truncated, corrupted or changed since); rerun the {stage} stage")


def job_command() -> str:
    """The command of this job, as the workflows run it: what rebuilds its output."""
    return " ".join(["python", "-m", "stages." + Path(sys.argv[0]).stem, *sys.argv[1:]])


REBUILD = "rebuild with `snakemake --cores N` or `dvc repro`"


def _removed(paths: list[Path], exc: Any) -> AuxselError:
    import shutil

    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    job = f" (its job: {exc.command})" if getattr(exc, "command", None) else ""
    return AuxselError(f"{exc}; removed {', '.join(map(str, paths))}: {REBUILD}{job}")


def verified(folder: Path) -> Path:
    """`folder` as its job wrote it (manifest: every file's size and sha256), else it is removed,
    so that Snakemake and DVC see it missing and rerun its job, and the error says so."""
    from auxsel.artifacts import DamagedArtifact, verify_dir

    if not folder.is_dir():
        raise AuxselError(f"{folder} is missing; {REBUILD}")
    try:
        verify_dir(folder)
    except DamagedArtifact as exc:
        raise _removed([folder], exc) from None
    return folder


SELECTION = ("selection.json", "selection.parquet", "selection.provenance.json")


def verified_selection() -> Path:
    """results/selection.{json,parquet} as the select stage wrote them (sha256s in its
    provenance), else all three files are removed and the error says so."""
    from auxsel.artifacts import DamagedArtifact, file_sha256

    files = [RESULTS / n for n in SELECTION]
    if not files[0].is_file():
        raise AuxselError(f"{files[0]} is missing; run the select stage first ({REBUILD})")
    prov = files[2]
    try:
        record = json.loads(prov.read_text())
        outputs = record["outputs"]
        for name in SELECTION[:2]:
            if file_sha256(RESULTS / name) != outputs[name]:
                raise DamagedArtifact(RESULTS / name, "sha256 is not what the select stage wrote (truncated, corrupted or changed since)",
                                      "python -m stages.select")
    except DamagedArtifact as exc:
        raise _removed(files, exc) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _removed(files, DamagedArtifact(prov, f"unreadable ({type(exc).__name__})", "python -m stages.select")) from None
    return files[0]


def remove_damaged() -> list[str]:
    """Every finished output in this project that fails its check is removed; one line each. Run
    by Snakemake when it starts, so a damaged output's job (and what reads it) reruns: Snakemake
    itself looks at a folder's time stamp only, never at the files inside."""
    runs = [d for kind in ("baseline", "screen", "final") for d in sorted((RESULTS / kind).glob("*/seed-*")) if d.is_dir()]
    data = [d for top in (PREPARED, FEATURES) for d in sorted(top.glob("*"))
            if d.is_dir() and not d.name.startswith(".") and (d / "manifest.json").exists()]
    checks = [lambda d=d: verified(d) for d in runs + data]
    if (RESULTS / SELECTION[0]).is_file():
        checks.append(verified_selection)
    said = []
    for check in checks:
        try:
            check()
        except AuxselError as exc:
            said.append(str(exc))
    return said


def prepared_count(task: str, split: str) -> int:
    """Rows of a prepared task's split, from its meta.json."""
    path = PREPARED / task / "meta.json"
    try:
        return int(json.loads(path.read_text())["counts"][split])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AuxselError(f"{path}: unreadable ({type(exc).__name__}); rerun the prepare stage") from exc


def load_tasks(params: dict[str, Any], names: list[str]):
    """TaskData for the target (train/dev/test) and auxiliaries (train only)."""
    from auxsel.tasks.load import load_task

    target = params["target"]
    out = {}
    for n in names:
        splits = ("train", "dev", "test") if n == target else ("train",)
        verify_prepared(PREPARED / n, splits)
        out[n] = load_task(PREPARED / n, splits)
        if caches_features(params):
            from auxsel import features

            verify_prepared(FEATURES / n, splits, ext="safetensors", stage="features")
            out[n] = features.load(FEATURES / n, out[n], feature_key(params, n))
    return out


def check_no_leaks(params: dict[str, Any], auxiliaries: list[str]) -> None:
    """No auxiliary holds examples of the target's dev or test split (by input content; the same
    check `auxsel check` runs): training on them would credit the candidate with the target's own
    evaluation data."""
    import pyarrow.parquet as pq

    from auxsel.tasks.pool import check_no_leak

    target = params["target"]
    held = {s: pq.read_table(PREPARED / target / f"{s}.parquet") for s in ("dev", "test")}
    for aux in auxiliaries:
        check_no_leak(target, held, params["tasks"][target]["inputs"], aux,
                      pq.read_table(PREPARED / aux / "train.parquet"), params["tasks"][aux]["inputs"])


def image_shape(tasks: dict, target: str) -> list[int] | None:
    """The target's image shape, which every image task must share (one trunk, one input shape)."""
    from auxsel.tasks.pool import shape_mismatch

    if tasks[target].kind != "image":
        return None
    shapes = {n: list(t.splits["train"]["image"].shape[1:]) for n, t in tasks.items() if t.kind == "image"}
    problem = shape_mismatch(target, shapes)
    if problem:
        raise AuxselError(problem)
    return shapes[target]


def check_inputs(model, tasks: dict) -> None:
    """Cached inputs must be what this model's frozen bottom gives (hidden states or pooled)."""
    from auxsel import features

    want = features.mode_of(model.trunk)
    for name, task in tasks.items():
        if task.kind in ("hidden", "pooled") and task.kind != want:
            raise AuxselError(f"task {name!r}: feature cache holds {task.kind!r} inputs but the model expects "
                              f"{want!r}; rerun the features stage")


def checkpoint_path(out: Path) -> Path:
    """Where a training job keeps its per-epoch checkpoint (train.resume): beside its output
    folder, not in it, so Snakemake's and DVC's removal of an incomplete output keeps it."""
    return out.with_name(f"{out.name}.ckpt")


def remove_checkpoint(ckpt: Path) -> None:
    ckpt.unlink(missing_ok=True)
    for stale in ckpt.parent.glob(f".{ckpt.name}.tmp-*"):  # left by a job killed while writing one
        stale.unlink(missing_ok=True)


def stage_train(params: dict[str, Any], stage: str) -> dict[str, Any]:
    """params with `final.train` laid over `train` for the final stage.

    Why: screens compare runs of one length, but a final of the target with one kept candidate
    takes a third of the optimiser steps per epoch that a final over the whole pool takes, so at
    the screens' epoch count the finals compare training budgets, not auxiliary tasks
    (docs/methods.md, "Final runs")."""
    extra = params.get("final", {}).get("train") or {}
    if stage != "final" or not extra:
        return params
    return {**params, "train": {**params["train"], **extra}}


def train_section(params: dict[str, Any]) -> dict[str, Any]:
    section = dict(params["train"])
    section["device"] = params["device"]
    return section


def training_run(
    params: dict[str, Any],
    stage: str,
    method: str,
    auxiliaries: list[str],
    seed: int,
    out: Path,
    weights: dict[str, float] | None = None,
    save_model: bool = True,
    label: str | None = None,
) -> None:
    """Train target + auxiliaries with `method` and write the run's artifacts atomically to `out`.

    The model's initialisation is seeded by (global seed, target, seed) only, so the baseline,
    each screening run and each final run of one seed start from the same weights: gains are
    paired.
    """
    from auxsel import artifacts, runs
    from auxsel.methods import run_method
    from auxsel.models import build_model, save_model as save
    from auxsel.seeding import derive_seed
    from auxsel.tasks.null import NULL, null_size, null_task
    from auxsel.train import dev_roles

    set_threads(params["threads"])
    params = stage_train(params, stage)
    target = params["target"]
    names = [target, *auxiliaries]
    real = [n for n in names if n != NULL]  # tasks with prepared data (the null is built from the target's)
    tasks = load_tasks(params, real)
    check_no_leaks(params, [n for n in real if n != target])
    null_info = {}
    if NULL in names:  # built here, from the target's loaded inputs (cached features included)
        sizes = [prepared_count(c, "train") for c in params["candidates"]]
        n = null_size(sizes, tasks[target].size("train"))
        null_seed = derive_seed(params["seed"], "null", target, seed)
        tasks[NULL] = null_task(tasks[target], n, null_seed)
        null_info = {"null": {"rows": n, "seed": null_seed, "sized_like": "median candidate train size"}}
    section = {} if method in ("single", "uniform", "fixed") else params.get(method, {})
    slice_ = {k: params[k] for k in ("seed", "target", "model", "train", "device")}
    slice_.update(method=method, options=section, auxiliaries=auxiliaries, weights=weights)
    inputs = [PREPARED / n for n in real] + ([FEATURES / n for n in real] if caches_features(params) else [])
    prov = artifacts.Provenance(stage, slice_, inputs, device=params["device"])
    init_seed = derive_seed(params["seed"], "init", target, seed)
    run_seed = derive_seed(params["seed"], stage, target, ",".join(auxiliaries), seed)
    eval_seed = derive_seed(params["seed"], "dev", target, seed)  # same dev draws for every run of this seed
    data_seed = derive_seed(params["seed"], "data", target, seed)  # same target batches for every run of this seed
    spec = model_spec(params)
    shape = image_shape(tasks, target)
    if shape is not None:  # the trunk is sized by the data (any H x W, 1 or 3 channels)
        spec["input_shape"] = shape
        if spec.get("normalize") == "target":  # standardised with the target's training-split statistics
            stats = json.loads((PREPARED / target / "meta.json").read_text())["pixel_stats"]
            spec["pixel_mean"], spec["pixel_std"] = stats["mean"], stats["std"]
    model = build_model(spec, {n: tasks[n].num_classes for n in names}, seed=init_seed)
    check_inputs(model, tasks)
    ckpt = checkpoint_path(out)
    result = run_method(method, model, tasks, target, seed=run_seed, train=train_section(params), options=section or None,
                        weights=weights, checkpoint=ckpt, eval_seed=eval_seed,
                        data_seed=data_seed)
    if result.resumed_from:
        print(f"resumed from epoch {result.resumed_from} ({ckpt})")
    if result.checkpoint_note:
        print(f"checkpoint {ckpt} not used: {result.checkpoint_note}; started over")
    with artifacts.atomic_dir(out, command=job_command()) as tmp:
        runs.write_result(tmp, result, stage, label or method, target, auxiliaries, seed)
        if save_model:
            model.load_state_dict(result.state)
            save(model, tmp / "model.safetensors")
        roles = dev_roles(tasks[target], params["train"].get("dev_holdout", 0.0), eval_seed)
        artifacts.write_json({"final_weights": result.final_weights, "best_epoch": result.best_epoch,
                              "epochs_run": result.epochs_run, "metrics": result.metrics, "dev_split": roles},
                             tmp / "summary.json")
        prov.write(tmp, init_seed=init_seed, run_seed=run_seed, eval_seed=eval_seed, data_seed=data_seed,
                   dev_split=roles, resumed_from=result.resumed_from, **null_info)
    remove_checkpoint(ckpt)
    dev = result.metrics.get("dev", {})
    test = result.metrics.get("test", {})
    print(f"{stage} {label or method} [{', '.join(names)}] seed {seed}: dev {dev} test {test} weights {result.final_weights}")
