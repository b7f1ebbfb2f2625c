"""Reliability: a killed training job resumes to the same numbers, bad params and data are refused
before any work with one line naming what is wrong, diverging losses stop the stage, runs are
reproducible and say what environment they ran in, concurrent jobs never share a path.

Every run is a real stage (or Snakemake) subprocess on real prepared data, at a tiny size.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from auxsel import runlock
from auxsel.errors import AuxselError
from conftest import ROOT, copy_project, run_stage
from test_pipeline import env, make_project, sh, tiny_params

torch.set_num_threads(1)  # the in-process runs are tiny; more threads only contend on a shared machine

TARGET, AUX, OTHER = "left", "left_more", "shuffled"
SCREEN = Path("results/screen")


def small_params(**train) -> dict:
    """tiny_params with one seed and 4 epochs of 2 x 120 examples per task (~0.3 s each: long
    enough to kill a job in, short enough for a test)."""
    params = tiny_params(candidates=(AUX, OTHER))
    params["seeds"] = [0]
    params["train"].update(epochs=4, examples_per_task=240, **train)
    return params


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, raw_dir: Path) -> Path:
    """A project with the target and two candidates prepared by the real prepare (and features) stage."""
    root = make_project(tmp_path_factory.mktemp("reliability"), raw_dir, small_params())
    for task in (TARGET, AUX, OTHER):
        run_stage(root, "prepare", "--task", task)
        run_stage(root, "features", "--task", task)
    return root


def project(dest: Path, prepared: Path, params: dict) -> Path:
    """A copy of the prepared project (data hard-linked: replace files there, never edit them)."""
    shutil.copytree(prepared, dest, ignore=shutil.ignore_patterns("data", "__pycache__"))
    shutil.copytree(prepared / "data", dest / "data", copy_function=os.link)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def tables(out: Path) -> dict[str, list[dict]]:
    """metrics / weights / history rows without the wall-clock columns."""
    out_tables = {}
    for name in ("metrics", "weights", "history"):
        rows = pq.read_table(out / f"{name}.parquet").to_pylist()
        out_tables[name] = [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]
    return out_tables


def screen_out(root: Path, aux: str = AUX, seed: int = 0) -> Path:
    return root / SCREEN / aux / f"seed-{seed}"


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the job ended (rc {proc.returncode}) before {path} appeared")
        if time.monotonic() > end:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.005)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, prepared: Path) -> dict:
    """One uninterrupted screening run (train.resume off) of {left, left_more}, seed 0."""
    root = project(tmp_path_factory.mktemp("ref") / "p", prepared, small_params())
    run_stage(root, "screen", "--aux", AUX, "--seed", "0")
    out = screen_out(root)
    return {"root": root, "tables": tables(out), "provenance": json.loads((out / "provenance.json").read_text())}


# --- 1. kill and resume ------------------------------------------------------------------------


def test_killed_screen_leaves_nothing_complete_and_resumes_to_the_same_numbers(tmp_path, prepared, reference):
    root = project(tmp_path / "p", prepared, small_params(resume=True))
    out = screen_out(root)
    ckpt = out.with_name("seed-0.ckpt")
    proc = subprocess.Popen([sys.executable, "-m", "stages.screen", "--aux", AUX, "--seed", "0"], cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(ckpt, proc)  # epoch 1 is done and checkpointed; the job is now in epoch 2
    proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    # nothing that looks like the output: no folder, no hidden half-written one; only the
    # checkpoint (and at most the temp file of a checkpoint being written)
    assert not out.exists()
    left = {p.name for p in out.parent.iterdir()}
    assert "seed-0.ckpt" in left and all(n == "seed-0.ckpt" or n.startswith(".seed-0.ckpt.tmp-") for n in left), left

    again = run_stage(root, "screen", "--aux", AUX, "--seed", "0")
    resumed = re.search(r"resumed from epoch (\d+)", again.stdout)
    assert resumed and 1 <= int(resumed.group(1)) < 4, again.stdout
    assert tables(out) == reference["tables"]  # identical to the uninterrupted run without checkpoints
    assert json.loads((out / "provenance.json").read_text())["resumed_from"] == int(resumed.group(1))
    assert not ckpt.exists() and {p.name for p in out.parent.iterdir()} == {"seed-0"}


def test_snakemake_marks_a_killed_job_incomplete_and_rerun_incomplete_resumes_it(tmp_path, prepared, reference):
    root = project(tmp_path / "p", prepared, small_params(resume=True))
    target = str(SCREEN / AUX / "seed-0")
    ckpt = root / f"{target}.ckpt"
    proc = subprocess.Popen(["snakemake", "--cores", "1", target], cwd=root, env=env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(ckpt, proc)
    os.killpg(proc.pid, signal.SIGSTOP)  # held mid-run while the checks below run
    # one runner at a time: while Snakemake works here, a stage started by hand and a second
    # Snakemake are refused, naming the holder (issue 16 item 4)
    holder = f"snakemake (pid {proc.pid} on {socket.gethostname()}"
    line = one_error_line(run_stage(root, "screen", "--aux", OTHER, "--seed", "0", check=False))
    assert holder in line and "wait for it to finish or stop it" in line, line
    second = sh(root, "snakemake", "-n", check=False)
    assert second.returncode != 0 and holder in second.stdout + second.stderr, second.stderr[-2000:]
    assert not screen_out(root, OTHER).exists()
    os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and its job, as a node failure would
    proc.communicate()
    assert not (root / target).exists()
    # Snakemake's own record: the job's output is marked incomplete (.snakemake/incomplete/<base64 path>)
    markers = {base64.urlsafe_b64decode(f).decode(errors="replace")
               for _, _, files in os.walk(root / ".snakemake/incomplete") for f in files if f != "migration_underway"}
    assert any(m.endswith(target) for m in markers), markers
    # README's recipe, as written there (here for the one killed job, on one core)
    recipe = "snakemake --unlock && snakemake --cores 2 --rerun-incomplete"
    assert f"`{recipe}`" in (ROOT / "README.md").read_text()
    sh(root, "snakemake", "--unlock")  # the killed Snakemake left its lock
    sh(root, "snakemake", "--cores", "1", "--rerun-incomplete", target)
    log = (root / "logs/screen" / AUX / "seed-0.log").read_text()
    assert re.search(r"resumed from epoch [1-3] ", log), log[-2000:]
    assert tables(root / target) == reference["tables"]
    assert not ckpt.exists()


def test_dvc_repro_after_a_kill_resumes_the_stage(tmp_path, prepared, reference):
    root = project(tmp_path / "p", prepared, small_params(resume=True))
    sh(root, "git", "init", "-q")
    sh(root, "dvc", "init", "-q")
    sh(root, "dvc", "repro", "check")  # --single-item skips the params check; its stamp must exist
    stage = f"screen@{AUX}-0"
    out = screen_out(root)
    ckpt = out.with_name("seed-0.ckpt")
    proc = subprocess.Popen(["dvc", "repro", "--single-item", stage], cwd=root, env=env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(ckpt, proc)
    os.killpg(proc.pid, signal.SIGSTOP)  # held mid-run while the check below runs
    # Snakemake is refused while DVC works here (DVC's own repo lock is held), naming it
    busy = sh(root, "snakemake", "-n", check=False)
    assert busy.returncode != 0 and f"dvc (pid {proc.pid}) is running in this project" in busy.stdout + busy.stderr, busy.stderr[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)  # DVC and the stage's process, as a node failure would
    proc.communicate()
    assert not out.exists() and ckpt.exists()
    again = sh(root, "dvc", "repro", "--single-item", stage)
    resumed = re.search(r"resumed from epoch (\d+)", again.stdout + again.stderr)
    assert resumed and 1 <= int(resumed.group(1)) < 4, again.stdout[-2000:]
    assert tables(out) == reference["tables"]
    assert not ckpt.exists()
    assert stage in (root / "dvc.lock").read_text()


def _tasks_and_model(prepared: Path, names: list[str], seed: int = 3):
    from auxsel.models import build_model
    from auxsel.tasks.load import load_task

    tasks = {n: load_task(prepared / "data/prepared" / n, ("train", "dev", "test") if n == TARGET else ("train",))
             for n in names}
    return tasks, build_model({"kind": "lenet"}, {n: tasks[n].num_classes for n in names}, seed=seed)


LIB_TRAIN = dict(batch_size=16, lr=0.03, momentum=0.9, examples_per_task=64)


@pytest.mark.parametrize("method, options", [("single", None), ("uniform", None), ("diw", {"batches": 1}), ("avil", None),
                                             ("avil_literal", {"dev_batch": 32})])
def test_every_method_resumes_exactly(tmp_path, prepared, method, options):
    """A run stopped after epoch 2 and continued from its checkpoint equals an uninterrupted one
    (every optimiser, sampler, RNG and weight state is in the checkpoint)."""
    from auxsel.methods import run_method

    names = [TARGET] if method == "single" else [TARGET, AUX]
    weights = {TARGET: 1.0, AUX: 0.5} if method == "diw" else None
    optimizer = "adamw" if method == "uniform" else "sgd"

    def go(epochs: int, ckpt: Path | None):
        tasks, model = _tasks_and_model(prepared, names)
        train = {**LIB_TRAIN, "epochs": epochs, "optimizer": optimizer, "resume": ckpt is not None}
        return run_method(method, model, tasks, TARGET, seed=11, train=train, options=options, weights=weights,
                          checkpoint=ckpt)

    def strip(r):
        return ([{k: v for k, v in h.items() if k != "seconds"} for h in r.history],
                [{k: v for k, v in w.items() if not k.endswith("seconds") and k != "alpha"} for w in r.weights],
                [w["alpha"] for w in r.weights if not math.isnan(w["alpha"])], r.metrics, r.best_epoch, r.final_weights)

    whole = go(4, None)
    ckpt = tmp_path / "run.ckpt"
    first = go(2, ckpt)  # the "killed" run: its checkpoint holds epoch 2
    assert first.resumed_from == 0 and ckpt.is_file()
    rest = go(4, ckpt)
    assert rest.resumed_from == 2 and rest.checkpoint_note == ""
    assert strip(rest) == strip(whole)
    assert all(torch.equal(v, whole.state[k]) for k, v in rest.state.items())


def test_a_checkpoint_of_another_run_or_a_damaged_one_is_not_used(tmp_path, prepared):
    from auxsel.methods import run_method

    def go(ckpt: Path, **train):
        tasks, model = _tasks_and_model(prepared, [TARGET, AUX])
        return run_method("avil", model, tasks, TARGET, seed=11, checkpoint=ckpt,
                          train={**LIB_TRAIN, "epochs": 2, "resume": True, **train})

    ckpt = tmp_path / "run.ckpt"
    go(ckpt)
    other = go(ckpt, lr=0.01)
    assert other.resumed_from == 0 and "different run" in other.checkpoint_note
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # a truncated file (a write is atomic, but a disk can fail)
    damaged = go(ckpt)
    assert damaged.resumed_from == 0 and damaged.checkpoint_note.startswith("unreadable")
    with pytest.raises(AuxselError, match="train.resume is set but no checkpoint path"):
        go(None)


# --- 2. params: refused by Snakemake before any job ---------------------------------------------


@pytest.mark.parametrize("mutate, message", [
    (lambda text: text.replace("  batch_size: 32", "  batch_size: 32\n  resume: 'yes'"), "params: train.resume: 'yes' is not of type 'boolean'"),
    (lambda text: text.replace("  right:", "  mnist:", 1), "params: duplicate key 'mnist'"),
], ids=["wrong type of the new key", "duplicate task name"])
def test_snakemake_refuses_fuzzed_params_before_any_job(tmp_path, mutate, message):
    root = copy_project(tmp_path)
    text = (root / "params.yaml").read_text()
    assert mutate(text) != text
    (root / "params.yaml").write_text(mutate(text))
    proc = sh(root, "snakemake", "-n", check=False)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert not (root / "data").exists() and not (root / "results").exists() and not (root / "logs").exists()


# --- 3. data: damaged prepared files, bad source files ------------------------------------------


def test_truncated_prepared_parquet_stops_the_training_stage(tmp_path, prepared):
    root = project(tmp_path / "p", prepared, small_params())
    path = root / "data/prepared" / TARGET / "train.parquet"
    data = path.read_bytes()
    path.unlink()  # hard-linked: replace, never edit
    path.write_bytes(data[: len(data) // 2])
    line = one_error_line(run_stage(root, "screen", "--aux", AUX, "--seed", "0", check=False))
    assert "data/prepared/left/train.parquet" in line and "rerun the prepare stage" in line
    assert not (root / "results").exists()


def _damaged(tmp_path: Path, prepared: Path, how: str) -> Path:
    """A copy of the prepared auxiliary without its provenance (so only the reader can notice)."""
    folder = tmp_path / AUX
    shutil.copytree(prepared / "data/prepared" / AUX, folder)
    (folder / "provenance.json").unlink()
    path = folder / "train.parquet"
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) * 2 // 3]))
    elif how == "garbage":
        path.write_bytes(bytes(len(data)))
    elif how == "labels out of range":
        table = pq.read_table(path)
        pq.write_table(table.set_column(table.column_names.index("label"), "label", pa.array([12] * table.num_rows)), path)
    elif how == "images of the wrong size":
        table = pq.read_table(path)
        small = pa.array([[0] * 100] * table.num_rows, type=pa.list_(pa.uint8()))
        pq.write_table(table.set_column(table.column_names.index("image"), "image", small), path)
    elif how == "rows missing":
        pq.write_table(pq.read_table(path).slice(0, 50), path)
    return folder


@pytest.mark.parametrize("how, message", [
    ("truncated", "unreadable Parquet"),
    ("garbage", "unreadable Parquet"),
    ("labels out of range", "labels out of range 0..9: [12]"),
    ("images of the wrong size", "cannot read the image columns as [36, 36]"),
    ("rows missing", "50 rows, but meta.json says 120"),
])
def test_damaged_prepared_file_is_one_error_naming_it(tmp_path, prepared, how, message):
    from auxsel.tasks.load import load_task

    folder = _damaged(tmp_path, prepared, how)
    with pytest.raises(AuxselError) as err:
        load_task(folder, ("train",))
    assert str(err.value).startswith(f"{folder / 'train.parquet'}: ") and message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_sha256_of_prepared_files_is_checked(tmp_path, prepared):
    """A same-size corruption that Parquet might still decode is caught by the hash prepare recorded."""
    from stages._common import verify_prepared

    folder = tmp_path / AUX
    shutil.copytree(prepared / "data/prepared" / AUX, folder)
    path = folder / "train.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    verify_prepared(folder, ("dev",))  # dev is untouched
    with pytest.raises(AuxselError, match=r"train\.parquet: sha256 [0-9a-f]{64} is not the [0-9a-f]{64} that the prepare stage wrote"):
        verify_prepared(folder, ("train",))


def _files_params(path: Path, **extra) -> dict:
    spec = {"source": "files", "data_files": str(path), "inputs": ["pixels"], "label": "digit", "num_classes": 3,
            "dev_fraction": 0.2, "test_fraction": 0.2, **extra}
    return {"target": "mine", "candidates": ["other"], "tasks": {"mine": spec, "other": copy.deepcopy(spec)}}


@pytest.mark.parametrize("case", ["csv without the label column", "truncated parquet"])
def test_bad_source_file_stops_prepare(tmp_path, case):
    root = copy_project(tmp_path / "p")
    rows = {"pixels": [[i % 256] * 1296 for i in range(40)], "digit": [i % 3 for i in range(40)]}
    if case.startswith("csv"):
        path = tmp_path / "mine.csv"
        pacsv.write_csv(pa.table({"text": [f"row {i}" for i in range(40)], "number": list(range(40))}), path)
        params = _files_params(path, inputs=["text"], label="digit")
        expected = "task mine: column 'digit' not found"
    else:
        path = tmp_path / "mine.parquet"
        pq.write_table(pa.table(rows), path)
        path.write_bytes(path.read_bytes()[:-40])
        params = _files_params(path)
        expected = f"task mine: could not load {path}"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    line = one_error_line(run_stage(root, "prepare", "--task", "mine", check=False))
    assert line.startswith(f"error: {expected}"), line
    assert not (root / "data/prepared/mine").exists() and not list((root / "data/prepared").glob(".mine*"))


# --- 4. numerical guard --------------------------------------------------------------------------


def test_diverging_loss_stops_the_stage_and_writes_no_model(tmp_path, prepared):
    # (lr 1e6 is not enough: the ReLUs die and the loss stays finite, ~1e6; 1e10 overflows in epoch 1)
    root = project(tmp_path / "p", prepared, small_params(lr=1e10))
    line = one_error_line(run_stage(root, "baseline", "--task", TARGET, "--seed", "0", check=False))
    assert re.match(r"error: task 'left', epoch \d+: training loss is (nan|inf)", line), line
    assert not (root / "results/baseline/left/seed-0").exists()
    assert not list(root.glob("results/**/*.safetensors")) and not list(root.glob("results/**/.seed-0*"))


@pytest.mark.parametrize("steps, message", [
    (2, "αVIL: the α fit diverged (α = [nan, nan])"),  # the 2nd step sees a non-finite loss: α is NaN
    (1, "avil produced dev_loss_after = nan"),  # α is finite but the merged parameters overflow
])
def test_alpha_fit_cannot_silently_diverge(prepared, steps, message):
    """A runaway α fit is an error naming the task and epoch, never NaN (or floored) weights."""
    from auxsel.methods import run_method

    tasks, model = _tasks_and_model(prepared, [TARGET, AUX])
    options = {"readout": "alpha", "alpha_solver": "sgd", "alpha_param": "direct", "alpha_lr": 1e30, "alpha_steps": steps}
    with pytest.raises(AuxselError) as err:
        run_method("avil", model, tasks, TARGET, seed=0, train={**LIB_TRAIN, "epochs": 2}, options=options)
    assert str(err.value).startswith(f"task 'left', epoch 1: {message}"), str(err.value)


# --- 5. determinism and provenance ---------------------------------------------------------------


def test_same_seed_same_tables_other_seed_different(tmp_path, prepared, reference, concurrent):
    """The second run of the same job (here: the one run next to another job, with checkpoints on)
    gives the same tables; a different global seed gives different ones."""
    same = concurrent["root"]
    assert tables(screen_out(same)) == reference["tables"]
    other_params = small_params()
    other_params["seed"] = 1
    other = project(tmp_path / "other", prepared, other_params)
    run_stage(other, "screen", "--aux", AUX, "--seed", "0")
    a, b = reference["tables"], tables(screen_out(other))
    assert a["metrics"] != b["metrics"] and a["weights"] != b["weights"]
    prov = json.loads((screen_out(same) / "provenance.json").read_text())
    assert prov["run_seed"] == reference["provenance"]["run_seed"]
    assert prov["init_seed"] == reference["provenance"]["init_seed"]
    assert prov["environment"] == reference["provenance"]["environment"]
    assert json.loads((screen_out(other) / "provenance.json").read_text())["run_seed"] != prov["run_seed"]


def test_provenance_tells_environments_apart(reference):
    prov = reference["provenance"]
    env_ = prov["environment"]
    assert env_["machine"] and env_["cpu_model"] and env_["cpu_count"] >= 1
    t = env_["torch"]
    assert t["num_threads"] == 1  # params threads: 1
    assert t["cpu_capability"] and t["cuda_available"] == torch.cuda.is_available()
    assert {"cuda_build", "cudnn", "gpus", "deterministic_algorithms", "num_interop_threads", "mkl"} <= set(t)
    assert prov["packages"]["torch"] and prov["packages"]["python"]
    assert prov["git"].keys() == {"commit", "dirty"} and prov["host"] and prov["platform"]
    assert prov["resumed_from"] == 0


# --- 6. concurrency ------------------------------------------------------------------------------

AUDIT = '''
import os, sys
_log = os.environ.get("AUXSEL_AUDIT_LOG")
if _log:
    _fh = open(_log, "a", buffering=1)
    _WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def _abs(path, dir_fd=None):
        path = os.fsdecode(path)
        if dir_fd not in (None, -1) and not os.path.isabs(path):  # shutil.rmtree works relative to folder fds
            try:
                return os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
            except OSError:
                return f"fd{dir_fd}:{path}"
        return os.path.abspath(path)

    def _hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITE)
            paths = [(path, None)] if writing else []
        elif event == "os.rename":  # os.rename and os.replace
            paths = [(args[0], args[2]), (args[1], args[3])]
        elif event in ("os.remove", "os.rmdir"):
            paths = [(args[0], args[1])]
        elif event == "os.mkdir":
            paths = [(args[0], args[2])]
        elif event in ("shutil.rmtree", "os.truncate", "os.link", "os.symlink"):
            paths = [(args[0], None)]
        else:
            return
        for p, fd in paths:
            if isinstance(p, (str, bytes, os.PathLike)):
                _fh.write(event + "\\t" + _abs(p, fd) + "\\n")

    sys.addaudithook(_hook)
'''


@pytest.fixture(scope="module")
def concurrent(tmp_path_factory, prepared) -> dict:
    """Two screening jobs (different candidates, checkpoints on) started together, each recording
    the paths it writes, renames, removes or creates (Python audit hooks)."""
    tmp = tmp_path_factory.mktemp("concurrent")
    root = project(tmp / "p", prepared, small_params(resume=True))
    hooks = tmp / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(AUDIT)
    procs = {}
    # two jobs of one run, as Snakemake starts them: the run holds the project, the jobs carry its token
    lock = runlock.held(root, "pytest (two jobs of one run)")
    lock.__enter__()
    for aux in (AUX, OTHER):
        log = tmp / f"{aux}.log"
        procs[aux] = (log, subprocess.Popen(
            [sys.executable, "-m", "stages.screen", "--aux", aux, "--seed", "0"], cwd=root,
            env={**os.environ, "PYTHONPATH": f"{hooks}{os.pathsep}{root}", "AUXSEL_AUDIT_LOG": str(log),
                 "PYTHONDONTWRITEBYTECODE": "1"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    written = {}
    for aux, (log, proc) in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        written[aux] = {tuple(line.split("\t")) for line in log.read_text().splitlines()}
    lock.__exit__(None, None, None)
    return {"root": root, "written": written}


def test_two_screens_at_once_never_share_a_path(concurrent):
    """Both jobs finish; the files, temp folders and checkpoints each one writes are its own."""
    root, written = concurrent["root"], concurrent["written"]
    for aux in (AUX, OTHER):
        assert any(p.endswith(f"{aux}/seed-0.ckpt") for _, p in written[aux]), "the job wrote no checkpoint"
    paths = {aux: {p for e, p in ev if e != "os.mkdir" and not p.startswith("/dev/")} for aux, ev in written.items()}
    assert paths[AUX] and paths[OTHER]
    assert not paths[AUX] & paths[OTHER], sorted(paths[AUX] & paths[OTHER])
    # in the project, shared folders are only ever created (exist_ok), and only those above both
    # outputs (outside it, torch creates its per-user cache folder at import: nothing is written there)
    shared_dirs = {p for e, p in written[AUX] if e == "os.mkdir"} & {p for e, p in written[OTHER] if e == "os.mkdir"}
    outs = [str(screen_out(root, aux)) for aux in (AUX, OTHER)]
    assert all(all(o.startswith(d + os.sep) for o in outs) for d in shared_dirs if d.startswith(str(root))), shared_dirs
    for aux in (AUX, OTHER):
        assert pq.read_table(screen_out(root, aux) / "weights.parquet").num_rows == 2 * 4
        assert {p.name for p in (root / SCREEN / aux).iterdir()} == {"seed-0"}  # no temp dirs, no checkpoint left


def test_prepare_keeps_its_datasets_cache_in_its_own_temp_folder(tmp_path):
    """A `files` task goes through `datasets.load_dataset`: its cache lives in the job's own hidden
    temp folder and goes with it; nothing is written to the shared Hugging Face cache."""
    root = copy_project(tmp_path / "p")
    hooks, hf_home = tmp_path / "hooks", tmp_path / "hf-home"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(AUDIT)
    path = tmp_path / "mine.parquet"
    pq.write_table(pa.table({"pixels": [[i % 256] * 1296 for i in range(40)], "digit": [i % 3 for i in range(40)]}), path)
    (root / "params.yaml").write_text(yaml.safe_dump(_files_params(path)))
    log = tmp_path / "audit.log"
    proc = subprocess.run([sys.executable, "-m", "stages.prepare", "--task", "mine"], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": f"{hooks}{os.pathsep}{root}", "AUXSEL_AUDIT_LOG": str(log),
                               "PYTHONDONTWRITEBYTECODE": "1", "HF_HOME": str(hf_home), "HF_DATASETS_CACHE": str(hf_home / "datasets")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = {tuple(line.split("\t")) for line in log.read_text().splitlines()}
    in_project = {p for _, p in events if p.startswith(str(root) + os.sep)}
    temp_folder = re.compile(re.escape(str(root / "data/prepared")) + r"/\.mine\.tmp-[^/]+")
    job_tmp = {m.group(0) for p in in_project if (m := temp_folder.match(p))}
    assert len(job_tmp) == 1, job_tmp
    (tmp_dir,) = job_tmp
    assert any(".hf-cache" in p for p in in_project if p.startswith(tmp_dir))  # the cache was there
    final = str(root / "data/prepared/mine")
    lock = (str(root / ".auxsel"), str(root / ".auxsel/runner.lock"))  # the job took the project (auxsel.runlock)
    stray = {p for p in in_project if not p.startswith(tmp_dir) and p not in (final, str(root / "data"), str(root / "data/prepared"), *lock)}
    assert not stray, stray
    assert not hf_home.exists() or not any(hf_home.rglob("*")), sorted(hf_home.rglob("*"))
    assert not any(p.startswith(str(hf_home)) or "/.cache/huggingface" in p for _, p in events)
    assert {p.name for p in (root / "data/prepared/mine").iterdir()} == {"train.parquet", "dev.parquet", "test.parquet", "meta.json", "provenance.json", "manifest.json"}


def test_leftovers_of_a_killed_writer_are_cleared_by_the_next_write(tmp_path):
    """SIGKILL skips every cleanup: the hidden temp folder (or the moved-aside old output) of a
    writer killed mid-rename stays behind. The next write of the same output removes it — but
    only if its owner (host + pid in the name) is gone."""
    import socket

    from auxsel import artifacts

    host = socket.gethostname()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    out = tmp_path / "results" / "seed-0"
    out.parent.mkdir(parents=True)
    dead_tmp = out.with_name(f".seed-0.tmp-{host}-{gone.pid}-abc")
    dead_old = out.with_name(f".seed-0.old-{host}-{gone.pid}-0")
    live_tmp = out.with_name(f".seed-0.tmp-{host}-{os.getpid()}-xyz")
    other_host = out.with_name(f".seed-0.tmp-elsewhere-{gone.pid}-abc")
    for d in (dead_tmp, dead_old, live_tmp, other_host):
        d.mkdir()
        (d / "metrics.parquet").write_bytes(b"half")
    dead_file = tmp_path / f".selection.json.tmp-{host}-{gone.pid}-0"
    dead_file.write_text("{")
    with artifacts.atomic_dir(out) as tmp:
        (tmp / "summary.json").write_text("{}")
    artifacts.write_json({"ok": 1}, tmp_path / "selection.json")
    assert (out / "summary.json").read_text() == "{}"
    assert not dead_tmp.exists() and not dead_old.exists() and not dead_file.exists()
    assert live_tmp.exists() and other_host.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(["seed-0", live_tmp.name, other_host.name])


def test_the_runner_lock_names_its_holder_and_a_dead_holders_lock_is_no_lock(tmp_path):
    """Issue 16 item 4, the lock itself: a live holder is named (tool, pid, host); one killed with
    SIGKILL leaves its record but no lock, and the next runner takes it without anyone clearing it."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from auxsel import runlock; "
        f"runlock.acquire(Path({str(tmp_path)!r}), 'some tool'); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(runlock.RunnerBusy) as err:
        runlock.acquire(tmp_path, "snakemake")
    assert str(err.value).startswith(f"some tool (pid {holder.pid} on {socket.gethostname()}, since ")
    assert "is running in this project" in str(err.value) and "\n" not in str(err.value)
    holder.kill()
    holder.wait()
    assert runlock.holder(tmp_path)["pid"] == holder.pid  # the dead runner's record is still there
    with runlock.held(tmp_path, "snakemake") as record:
        assert record["pid"] == os.getpid() and runlock.holder(tmp_path)["token"] == record["token"]
        assert os.environ[runlock.RUNNER_ENV] == record["token"]  # what the jobs it starts carry
        runlock.enter(tmp_path, "a job")  # a job of this run goes on
    assert runlock.RUNNER_ENV not in os.environ


# --- 7. messages: one line naming the key or file and what to do (issue 16 item 7) ---------------


@pytest.mark.parametrize("case", ["a folder as the data file", "a csv with a header and no rows"])
def test_bad_data_files_are_one_line_naming_the_key(tmp_path, case):
    root = copy_project(tmp_path / "p")
    if case.startswith("a folder"):
        path = tmp_path / "folder"
        path.mkdir()
        expected = f"error: tasks.mine.data_files: {path} is a folder; name the file(s) in it"
    else:
        path = tmp_path / "empty.csv"
        path.write_text("pixels,digit\n")
        expected = f"error: tasks.mine.data_files: {path} hold no rows"
    (root / "params.yaml").write_text(yaml.safe_dump(_files_params(path)))
    assert one_error_line(run_stage(root, "prepare", "--task", "mine", check=False)) == expected


def test_cuda_on_a_machine_without_one_names_the_device_key(tmp_path, prepared):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    params = small_params()
    params["device"] = "cuda"
    root = project(tmp_path / "p", prepared, params)
    line = one_error_line(run_stage(root, "baseline", "--task", TARGET, "--seed", "0", check=False))
    assert line == "error: device: 'cuda' in params, but torch finds no CUDA device on this machine; set `device: cpu`"


def test_an_encoder_that_cannot_be_loaded_is_one_line_naming_model_name_or_path(tmp_path):
    from test_data import tiny_text

    params = tiny_text()
    params["model"]["name_or_path"] = "nobody-here/no-such-encoder"  # a well-formed hub id; no hub here
    root = copy_project(tmp_path / "p")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    task = params["target"]
    proc = subprocess.run([sys.executable, "-m", "stages.prepare", "--task", task], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"})
    line = one_error_line(proc)
    assert line.startswith("error: model.name_or_path: cannot load the tokenizer of 'nobody-here/no-such-encoder': "), line
    # a path that is not there is named by the params check, before the hub client is asked
    params["model"]["name_or_path"] = "./models/minilm"
    with pytest.raises(AuxselError) as err:
        from auxsel import params as P

        P.validate(params, P.read_yaml(ROOT / "workflow/schemas/params.schema.yaml"))
    assert str(err.value) == ("params: model.name_or_path: './models/minilm' is not an existing folder nor a hub id "
                              "(owner/name); give a local model folder, builtin:minilm, or a hub id")


def test_a_changed_or_wrong_archive_is_one_line_naming_the_file(tmp_path, raw_dir):
    import gzip
    import pickle

    import numpy as np

    from auxsel.tasks import mnist as mn

    # a well-formed pickle of numpy arrays, of the wrong structure
    odd = tmp_path / "odd.pkl.gz"
    with gzip.open(odd, "wb") as fh:
        pickle.dump((np.zeros(3), np.zeros(3)), fh)
    with pytest.raises(AuxselError) as err:
        mn.load_mnist(odd)
    assert str(err.value).startswith(f"{odd}: not the MNIST pickle auxsel expects") and "\n" not in str(err.value)
    # prepare checks the fetched archive against its pins again (a file changed since the fetch)
    root = copy_project(tmp_path / "p", raw_dir)
    params = small_params()
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    pkl = root / "data/raw/mnist/mnist.pkl.gz"
    data = pkl.read_bytes()
    pkl.unlink()  # (it may be a link to the shared copy: replace it, never edit it)
    pkl.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    line = one_error_line(run_stage(root, "prepare", "--task", TARGET, check=False))
    assert line.startswith("error: data/raw/mnist/mnist.pkl.gz: sha256 mismatch: expected "), line
    assert line.endswith("; remove data/raw/mnist and rerun the fetch stage"), line
