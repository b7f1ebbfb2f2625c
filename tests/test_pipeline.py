"""The pipeline as users drive it: real Snakemake and DVC runs on a tiny default pool."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import ROOT, bin_path, copy_project

pytestmark = pytest.mark.slow

DVC_ENV_EXTRA = {"DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def tiny_params(candidates=("left_more", "shuffled")) -> dict:
    """The default pool, shrunk: same tasks and options, a few hundred canvases, 2 epochs, 2 seeds."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["candidates"] = list(candidates)
    params["tasks"] = {k: v for k, v in params["tasks"].items() if k in {params["target"], *candidates, "right"}}
    for spec in params["tasks"].values():
        spec["options"]["n"] = 300
        spec["dev_fraction"], spec["test_fraction"] = 0.2, 0.2
        spec.update(max_train=120, max_dev=60, max_test=60)
    params["seeds"] = [0, 1]
    params["train"]["epochs"] = 2
    params["final"]["methods"] = ["single", "avil"]
    params["final"]["train"] = {"epochs": 3}  # finals one epoch longer than screens: each reads its own length
    return params


def env() -> dict[str, str]:
    return {**os.environ, "PATH": bin_path(), **DVC_ENV_EXTRA}


def sh(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env())
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def make_project(root: Path, raw_dir: Path, params: dict, dvc: bool = False) -> Path:
    copy_project(root, raw_dir)
    shutil_src = ROOT / "src"
    import shutil

    shutil.copytree(shutil_src, root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if dvc:
        sh(root, "git", "init", "-q")
        sh(root, "dvc", "init", "-q")
    return root


def check_results(root: Path, params: dict) -> dict:
    target = params["target"]
    for seed in params["seeds"]:
        m = pq.read_table(root / f"results/baseline/{target}/seed-{seed}/metrics.parquet")
        assert m.column_names[:8] == ["stage", "method", "target", "auxiliaries", "seed", "split", "metric", "value"]
        for aux in params["candidates"]:
            d = root / f"results/screen/{aux}/seed-{seed}"
            w = pq.read_table(d / "weights.parquet")
            assert w.column_names[:4] == ["epoch", "task", "weight", "alpha"]
            assert set(w.column("task").to_pylist()) == {target, aux}
            assert w.num_rows == 2 * params["train"]["epochs"]
            h = pq.read_table(d / "history.parquet")
            assert h.column_names[:6] == ["epoch", "task", "split", "loss", "metric", "seconds"]
            # a screen reports the target on dev (what chose its epoch), the dev holdout (what selection
            # reads) and test (reported only)
            assert set(pq.read_table(d / "metrics.parquet").column("split").to_pylist()) == {"dev", "holdout", "test"}
            assert json.loads((d / "provenance.json").read_text())["stage"] == "screen"
        # every screen of one seed draws the same dev examples (αVIL's fit batch, DIW's dev batches)
        evals = {json.loads((root / f"results/screen/{a}/seed-{seed}/provenance.json").read_text())["eval_seed"]
                 for a in params["candidates"]}
        assert len(evals) == 1, evals
        for method in params["final"]["methods"]:
            d = root / f"results/final/{method}/seed-{seed}"
            assert (d / "model.safetensors").stat().st_size > 10_000
            metrics = pq.read_table(d / "metrics.parquet").to_pylist()
            test = [r["value"] for r in metrics if r["split"] == "test" and r["metric"] == "accuracy"]
            assert len(test) == 1 and 0.0 <= test[0] <= 1.0
            epochs = params["final"].get("train", {}).get("epochs", params["train"]["epochs"])
            assert json.loads((d / "summary.json").read_text())["epochs_run"] == epochs
            assert json.loads((d / "provenance.json").read_text())["params"]["train"]["epochs"] == epochs
    sel = json.loads((root / "results/selection.json").read_text())
    table = pq.read_table(root / "results/selection.parquet").to_pylist()
    assert [r["aux"] for r in table] == [c["aux"] for c in sel["candidates"]]
    assert table[0].keys() >= {"aux", "n_seeds", "weight_mean", "weight_std", "gain_mean", "gain_ci_low", "gain_ci_high",
                               "p_value", "p_holm", "selected", "rank"}
    rule = params["select"]
    kept = 0
    for r in sorted(table, key=lambda r: r["rank"]):  # the rule, applied as documented
        assert r["n_seeds"] == len(params["seeds"])
        level = rule.get("level", 0.1)
        min_w = rule["min_weight"] if rule["min_weight"] is not None else sel["null"]["weight_mean"]
        keep = r["null_p_holm"] <= level and r["gain_mean"] > rule["min_gain"] and r["weight_mean"] > min_w
        assert r["selected"] == (keep and kept < rule["top_k"]), r
        kept += r["selected"]
    assert sel["selected"] == [r["aux"] for r in table if r["selected"]]
    # the null candidate was screened every seed, on the same dev cut, and is reported beside the others
    assert sel["split"] == "holdout" and set(sel["null"]["dev"]) == {str(s) for s in params["seeds"]}
    for seed in params["seeds"]:
        prov = json.loads((root / f"results/screen/_null/seed-{seed}/provenance.json").read_text())
        assert prov["null"]["rows"] == 120 and prov["dev_split"]["holdout"] == 30  # median candidate; half of 60
        summary = json.loads((root / f"results/screen/_null/seed-{seed}/summary.json").read_text())
        assert sel["null"]["dev"][str(seed)] == summary["metrics"]["holdout"]["accuracy"]
    # every run keeps its answers on the holdout: they give the metric it recorded, every run of a seed
    # was judged on the same rows (its seed's half of dev), and the selection bootstrapped them
    from auxsel.runs import read_holdout
    from auxsel.train import holdout_rows

    for seed in params["seeds"]:
        folders = [root / f"results/baseline/left/seed-{seed}",
                   *(root / f"results/final/{m}/seed-{seed}" for m in params["final"]["methods"]),
                   *(root / f"results/screen/{a}/seed-{seed}" for a in [*params["candidates"], "_null"])]
        first = None
        for folder in folders:
            ans = read_holdout(folder)
            recorded = json.loads((folder / "summary.json").read_text())["metrics"]["holdout"]["accuracy"]
            assert (ans["pred"] == ans["label"]).mean() == recorded, folder
            first = ans if first is None else first
            assert (ans["row"] == first["row"]).all() and (ans["label"] == first["label"]).all(), folder
        eval_seed = json.loads((folders[0] / "provenance.json").read_text())["eval_seed"]
        assert first["row"].tolist() == holdout_rows(60, 0.5, eval_seed)[0].tolist()
    assert sel["test"]["dev_variance"] is False and sel["test"]["bootstrap_replicates"] == 2000  # measured, shown
    from auxsel import dev_sampling
    from auxsel.seeding import derive_seed

    weights = dev_sampling.example_weights(60, derive_seed(params["seed"], "select", "left"))
    answers = {a: {s: read_holdout(root / f"results/screen/{a}/seed-{s}") for s in params["seeds"]}
               for a in [*params["candidates"], "_null"]}
    for r in table:
        reps = dev_sampling.replicate_gains(answers[r["aux"]], answers["_null"], weights, "accuracy", 10)
        assert r["null_dev_se"] ** 2 == pytest.approx(dev_sampling.shared_variance(dev_sampling.seed_covariance(reps)),
                                                      rel=1e-9, abs=1e-15)
    report = json.loads((root / "results/report/metrics.json").read_text())
    assert set(report["test"]) == set(params["final"]["methods"])
    assert "<table" in (root / "results/report/index.html").read_text()
    return sel


def metrics_of(root: Path, params: dict) -> dict:
    out = {}
    for d in sorted((root / "results").rglob("metrics.parquet")):
        for r in pq.read_table(d).to_pylist():
            out[(str(d.relative_to(root)), r["split"], r["metric"])] = r["value"]
    return out


@pytest.fixture(scope="module")
def dvc_run(tmp_path_factory, raw_dir: Path) -> tuple[Path, dict]:
    params = tiny_params()
    root = make_project(tmp_path_factory.mktemp("dvc"), raw_dir, params, dvc=True)
    sh(root, "dvc", "repro")
    return root, params


def test_snakemake_end_to_end(smk_run):
    root, params = smk_run
    assert check_results(root, params)["target"] == "left"
    assert "Nothing to be done" in sh(root, "snakemake", "--cores", "2", "-n").stdout


def test_dvc_end_to_end(dvc_run):
    root, params = dvc_run
    check_results(root, params)
    assert dvc_clean(sh(root, "dvc", "status").stdout)


def test_both_front_ends_give_the_same_numbers(smk_run, dvc_run):
    smk, dvc = metrics_of(*smk_run), metrics_of(*dvc_run)
    assert len(smk) > 20 and smk == dvc


def test_snakemake_reruns_only_what_changed(smk_run):
    root, params = smk_run
    # one screening param changes: screening, selection, final, report rerun; prepare and baseline do not
    changed = dict(params, avil={"alpha_steps": 3})
    (root / "params.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
    jobs = job_counts(sh(root, "snakemake", "--cores", "2", "-n").stdout)
    assert jobs == {"screen": 6, "select": 1, "final": 4, "report": 1}  # 2 seeds x (2 candidates + the null)
    # the finals' own training length: the finals and the report, nothing before them
    longer = dict(params, final=dict(params["final"], train={"epochs": 4}))
    (root / "params.yaml").write_text(yaml.safe_dump(longer, sort_keys=False))
    assert job_counts(sh(root, "snakemake", "--cores", "2", "-n").stdout) == {"final": 4, "report": 1}
    # a new candidate (already defined, so already prepared): its screens, then everything
    # downstream of screening; nothing of the other candidates
    added = dict(params, candidates=[*params["candidates"], "right"])
    (root / "params.yaml").write_text(yaml.safe_dump(added, sort_keys=False))
    dry = sh(root, "snakemake", "--cores", "2", "-n").stdout
    # every final run reads the candidate list (the *_all runs) or the selection
    # (and the null candidate's, which is sized like the median candidate)
    assert job_counts(dry) == {"screen": 4, "select": 1, "final": 4, "report": 1}
    assert set(re.findall(r"output: results/screen/(\w+)/seed-\d", dry)) == {"right", "_null"}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_a_change_to_any_library_module_reruns_every_job_under_both_tools(smk_run, dvc_run):
    """The seed derivation (seeding.py) is read by every training job but was not a declared input:
    changing it changed every number and reran nothing. Every module of src/auxsel and stages/ is
    now an input of every rule and DVC stage."""
    for (root, params), tool in ((smk_run, "snakemake"), (dvc_run, "dvc")):
        for module in ("src/auxsel/seeding.py", "src/auxsel/artifacts.py", "src/auxsel/tasks/tensors.py"):
            path = root / module
            text, st = path.read_text(), path.stat()
            try:
                path.write_text(text + "\n# edited\n")
                if tool == "snakemake":
                    jobs = job_counts(sh(root, "snakemake", "--cores", "2", "-n").stdout)
                    n = len(params["seeds"])
                    assert jobs == {"fetch": len(params["fetch"]["archives"]), "prepare": len(params["tasks"]),
                                    "features": len(params["tasks"]), "baseline": n,
                                    "screen": n * (len(params["candidates"]) + 1), "select": 1,
                                    "final": n * len(params["final"]["methods"]), "report": 1}, (module, jobs)
                else:
                    out = sh(root, "dvc", "status").stdout
                    stale = set(re.findall(r"^(\S+):\s*$", out, re.M))
                    everything = {stage.split("@")[0] for stage in stale}
                    assert everything == {"check", "fetch", "prepare", "features", "baseline", "screen", "screen_null", "select",
                                          "final", "report"}, (module, out[-2000:])
            finally:
                path.write_text(text)
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        if tool == "snakemake":
            assert "Nothing to be done" in sh(root, "snakemake", "--cores", "2", "-n").stdout
        else:
            assert dvc_clean(sh(root, "dvc", "status").stdout)


def job_counts(dry_run: str) -> dict[str, int]:
    stats = dry_run.split("Job stats:")[-1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M) if m.group(1) not in ("all", "total")}


def test_dvc_reruns_only_what_changed(dvc_run):
    root, params = dvc_run
    # one screening param: DVC sees screening and final runs invalidated, not prepare or baseline
    # (select and report then rerun because their inputs change; the real run below shows it)
    changed = dict(params, avil={"alpha_steps": 3})
    (root / "params.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
    would = ran_stages(sh(root, "dvc", "repro", "--dry").stdout)
    assert {s.split("@")[0] for s in would} == {"check", "screen", "screen_null", "final"}
    assert sum(s.startswith("screen@") for s in would) == 4
    longer = dict(params, final=dict(params["final"], train={"epochs": 4}))
    (root / "params.yaml").write_text(yaml.safe_dump(longer, sort_keys=False))
    would = ran_stages(sh(root, "dvc", "repro", "--dry").stdout)
    assert {s.split("@")[0] for s in would} == {"check", "final"} and len(would) == 1 + 4, would
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # a new candidate: only its screens among the upstream stages, then everything downstream
    # (a dry run: DVC decides what is stale the same way as in a real run)
    added = dict(params, candidates=[*params["candidates"], "right"])
    (root / "params.yaml").write_text(yaml.safe_dump(added, sort_keys=False))
    try:
        would = ran_stages(sh(root, "dvc", "repro", "--dry").stdout)
    finally:
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert {s for s in would if s.startswith(("screen@", "prepare@", "baseline@", "fetch@", "features@"))} == {"screen@right-0", "screen@right-1"}
    assert {"select", "report"} <= would and sum(s.startswith("final@") for s in would) == 4, would
    assert dvc_clean(sh(root, "dvc", "status").stdout)


def dvc_clean(status: str) -> bool:
    """Nothing to rerun but the params check, which always runs (it guards every dvc repro)."""
    return status.strip() == "check:\n\talways changed"


def ran_stages(out: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", out))


def snakemake_jobs(root: Path) -> set[tuple[str, frozenset[str]]]:
    out = sh(root, "snakemake", "-n", "-p", "--forceall").stdout
    jobs = set()
    for block in out.split("\nrule ")[1:]:
        name = block.split(":", 1)[0]
        if name in ("all",) or "localrule all" in block:
            continue
        outputs = re.search(r"^\s+output: (.*)$", block, re.M)
        cmd = re.search(r"^Shell command: (.*)$", block, re.M) or re.search(r"^\s{4}(python -m .*)$", block, re.M)
        if not outputs or not cmd:
            continue
        command = re.split(r"\s+(?:>|2>&1|\|)", cmd.group(1))[0].strip()
        jobs.add((command, frozenset(o.strip() for o in outputs.group(1).split(","))))
    return jobs


def dvc_jobs(root: Path) -> set[tuple[str, frozenset[str]]]:
    """DVC's stages but its first, `check` (Snakemake runs the same checks when it starts)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = {s.name: s for s in repo.index.stages}
        check = stages.pop("check")
        assert check.cmd == "python -m stages.check" and check.always_changed
        for stage in stages.values():  # every other stage waits for it
            assert ".auxsel/params.ok" in {str(Path(d.fs_path).relative_to(root)) for d in stage.deps}, stage.name
        return {
            (stage.cmd, frozenset(str(Path(o.fs_path).relative_to(root)) for o in stage.outs))
            for stage in stages.values()
        }


@pytest.mark.parametrize("config", ["params.yaml", "configs/text.yaml"])
def test_snakemake_and_dvc_describe_the_same_jobs(tmp_path: Path, config: str):
    root = copy_project(tmp_path)
    import shutil

    shutil.copytree(ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / config, root / "params.yaml")
    sh(root, "git", "init", "-q")
    sh(root, "dvc", "init", "-q")
    smk, dvc = snakemake_jobs(root), dvc_jobs(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    expected = len(params["fetch"]["archives"]) + 2 * len(params["tasks"]) + len(params["seeds"]) * (
        1 + len(params["candidates"]) + 1 + len(params["final"]["methods"])  # + the null candidate's screen
    ) + 2
    assert len(dvc) == expected
    assert smk == dvc


def test_slurm_profile_dry_run_shows_resources(tmp_path: Path):
    root = copy_project(tmp_path)
    import shutil

    shutil.copytree(ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    out = sh(root, "snakemake", "--profile", "profiles/slurm", "-n").stdout
    screen = out.split("rule screen:")[1].split("\n\n")[0]
    assert "slurm_partition=<partition>" in screen and "slurm_account=<account>" in screen
    assert "mem_mb=4000" in screen and "runtime=60" in screen and "gpu=0" in screen
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["device"] = "cuda"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = sh(root, "snakemake", "--profile", "profiles/slurm", "-n").stdout
    assert "gpu=1" in out.split("rule final:")[1].split("\n\n")[0]
    assert "gpu=1" not in out.split("rule prepare:")[1].split("\n\n")[0]


def test_bad_params_stop_snakemake_before_any_job(tmp_path: Path):
    root = copy_project(tmp_path)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["select"]["min_wieght"] = 0.5
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = sh(root, "snakemake", "--cores", "1", check=False)
    assert proc.returncode != 0
    assert "params: select.min_wieght: unknown key" in proc.stdout + proc.stderr
    assert not (root / "data").exists() and not (root / "results").exists()


def tree_digest(root: Path) -> dict[str, str]:
    """Every file of a finished run's data/ and results/ with its sha256."""
    from auxsel.artifacts import file_sha256

    return {str(f.relative_to(root)): file_sha256(f) for top in ("data", "results") for f in sorted((root / top).rglob("*")) if f.is_file()}


BAD_EDITS = [
    (lambda p: p["train"].update(epochs=0), "params: train.epochs: 0 is less than the minimum of 1"),
    (lambda p: p["tasks"]["left_more"]["options"].update(shfit=6), "params: tasks.left_more.options.shfit: unknown key"),
    (lambda p: p["select"].update(level=2), "params: select.level: 2 is greater than or equal to the maximum of 1"),
]


def test_a_bad_params_edit_removes_no_output_under_either_tool(smk_run, dvc_run):
    """Issue 16 item 2: DVC removes a stage's outputs before its command runs; its first stage
    (`check`) refuses the params before any other stage runs, so a finished run survives a bad
    edit under DVC as it does under Snakemake (which checks at startup)."""
    from auxsel.runlock import RUNNER_ENV, held

    for (root, params), cmd in ((smk_run, ("snakemake", "--cores", "1")), (dvc_run, ("dvc", "repro"))):
        before = tree_digest(root)
        assert len(before) > 30
        good = (root / "params.yaml").read_text()
        try:
            for edit, message in BAD_EDITS:
                bad = yaml.safe_load(good)
                edit(bad)
                (root / "params.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
                proc = sh(root, *cmd, check=False)
                assert proc.returncode != 0 and message in proc.stdout + proc.stderr, (cmd, proc.stdout[-2000:], proc.stderr[-2000:])
                assert "Traceback" not in proc.stdout + proc.stderr
                assert tree_digest(root) == before, cmd
        finally:
            (root / "params.yaml").write_text(good)
        if cmd[0] == "dvc":
            # another runner holds the project (here: this process, as Snakemake would): dvc repro
            # stops at its first stage, naming the holder, and removes nothing
            (root / "params.yaml").write_text(good.replace("epochs: 2", "epochs: 3"))  # work to do
            try:
                with held(root, "snakemake") as record:
                    os.environ.pop(RUNNER_ENV)  # DVC is not a job of this "run": it must not carry its token
                    proc = sh(root, *cmd, check=False)
            finally:
                (root / "params.yaml").write_text(good)
            out = proc.stdout + proc.stderr
            assert proc.returncode != 0 and f"snakemake (pid {record['pid']} on {record['host']}" in out, out[-2000:]
            assert tree_digest(root) == before
            assert dvc_clean(sh(root, "dvc", "status").stdout)
        else:
            assert "Nothing to be done" in sh(root, "snakemake", "-n").stdout


def _common_verified(root: Path, folder: Path) -> bool:
    """The stages' own check of a run folder against its manifest, run in the project."""
    proc = subprocess.run([sys.executable, "-c", f"from stages import _common; _common.verified(__import__('pathlib').Path({str(folder)!r}))"],
                          cwd=root, capture_output=True, text=True, env={**env(), "PYTHONPATH": str(root)})
    return proc.returncode == 0


def _damage(path: Path, how: str) -> None:
    """Replace the file (never edit it: a fixture's files may be shared)."""
    data = path.read_bytes()
    path.unlink()
    if how == "truncate":
        path.write_bytes(data[:100])
    else:  # one bit flipped: same size, Parquet/JSON may still decode
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(flipped))


def test_select_counts_the_dev_examples_when_told_and_names_a_run_without_holdout_answers(smk_run, tmp_path: Path):
    """`select.dev_variance: true` adds the measured dev-example variance to each test (the default
    shows it only); a screen finished before runs kept their holdout answers (its manifest complete
    without them) is then named with what to do, while the default decides without them."""
    import shutil

    from auxsel import artifacts

    src, params = smk_run
    root = tmp_path / "p"
    shutil.copytree(src, root, symlinks=True)
    before = json.loads((src / "results/selection.json").read_text())

    def select(dev_variance: bool, check: bool = True):
        (root / "params.yaml").write_text(yaml.safe_dump({**params, "select": {**params["select"], "dev_variance": dev_variance}}))
        return sh(root, "python", "-m", "stages.select", check=check)

    select(True)
    counted = json.loads((root / "results/selection.json").read_text())
    assert before["test"]["dev_variance"] is False and counted["test"]["dev_variance"] is True
    for b, c in zip(before["candidates"], counted["candidates"]):
        assert c["aux"] == b["aux"] and c["gain_mean"] == b["gain_mean"] and c["null_dev_se"] == b["null_dev_se"]
        assert c["null_gain_se"] ** 2 == pytest.approx(b["null_gain_se"] ** 2 + b["null_dev_se"] ** 2, rel=1e-9, abs=1e-15)
        assert c["gain_se"] ** 2 == pytest.approx(b["gain_se"] ** 2 + b["dev_se"] ** 2, rel=1e-9, abs=1e-15)

    old = root / "results/screen/shuffled/seed-1"
    (old / "holdout_predictions.parquet").unlink()
    artifacts.write_manifest(old, json.loads((old / "manifest.json").read_text())["command"])
    proc = select(True, check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "error: select: results/screen/shuffled/seed-1 has no holdout_predictions.parquet (the run predates it); rerun "
        "that job, or set select.dev_variance: false to judge by the seed-to-seed variance alone"), proc.stderr
    select(False)
    after = json.loads((root / "results/selection.json").read_text())
    assert after["selected"] == before["selected"] and after["test"]["bootstrap_replicates"] == 0
    for b, a in zip(before["candidates"], after["candidates"]):
        assert a["aux"] == b["aux"] and a["null_gain_se"] == b["null_gain_se"] and a["dev_se"] is a["null_dev_se"] is None


def test_a_damaged_artifact_is_named_removed_and_rebuilt(smk_run, tmp_path: Path):
    """Issue 16 item 3: every run folder carries a manifest (size + sha256 of each file, the job's
    command); a stage checks what it reads, and Snakemake checks finished outputs when it starts,
    so a damaged one is removed and its job reruns to the same numbers."""
    import shutil

    src, params = smk_run
    root = tmp_path / "p"
    shutil.copytree(src, root, symlinks=True)
    before = metrics_of(root, params)
    selection = json.loads((root / "results/selection.json").read_text())
    screen = root / "results/screen/left_more/seed-0"
    manifest = json.loads((screen / "manifest.json").read_text())
    assert manifest["command"] == "python -m stages.screen --aux left_more --seed 0"
    assert set(manifest["files"]) == {"metrics.parquet", "history.parquet", "weights.parquet", "summary.json", "provenance.json",
                                      "holdout_predictions.parquet"}  # screens keep no model

    # the report: a flipped bit in a final run's table
    final = root / "results/final/avil/seed-1"
    _damage(final / "metrics.parquet", "flip")
    line = sh(root, "python", "-m", "stages.report", check=False).stderr.strip()
    assert line.startswith("error: results/final/avil/seed-1/metrics.parquet: sha256 is not what was written") and "\n" not in line, line
    assert not final.exists()
    # a stage that reads a damaged file: one line naming it and the job that rebuilds it; the folder is gone
    _damage(screen / "summary.json", "truncate")
    proc = sh(root, "python", "-m", "stages.select", check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("error: results/screen/left_more/seed-0/summary.json: 100 bytes, but "), proc.stderr
    assert ("removed results/screen/left_more/seed-0: rebuild with `snakemake --cores N` or `dvc repro` "
            "(its job: python -m stages.screen --aux left_more --seed 0)") in proc.stderr
    assert not screen.exists() and (root / "results/selection.json").exists()
    # Snakemake: a same-size change it cannot see by time stamps is found when it starts
    _damage(root / "results/selection.parquet", "flip")
    dry = sh(root, "snakemake", "-n")
    assert "auxsel: results/selection.parquet: sha256 is not what the select stage wrote" in dry.stderr, dry.stderr[-2000:]
    assert not (root / "results/selection.json").exists()
    # rebuilt up to the selection (the final runs after it only repeat what the first run did)
    sh(root, "snakemake", "--cores", "2", "results/selection.json")
    assert (screen / "manifest.json").is_file() and _common_verified(root, screen)
    rebuilt = metrics_of(root, params)
    assert rebuilt == {k: v for k, v in before.items() if not k[0].startswith("results/final/avil/seed-1")}
    assert json.loads((root / "results/selection.json").read_text()) == selection
    assert "Nothing to be done" in sh(root, "snakemake", "-n", "results/selection.json").stdout


def test_dvc_restores_a_stage_output_that_was_damaged(dvc_run):
    root, params = dvc_run
    path = root / "results/screen/shuffled/seed-1/summary.json"
    good = path.read_bytes()
    _damage(path, "truncate")
    assert "results/screen/shuffled/seed-1" in sh(root, "dvc", "status").stdout
    out = sh(root, "dvc", "repro").stdout
    # DVC restores the stage's output from its run cache (same deps, same command) or reruns it
    restored = "Stage 'screen@shuffled-1' is cached - skipping run, checking out outputs" in out
    assert restored or ran_stages(out) == {"check", "screen@shuffled-1"}, out[-3000:]
    assert path.read_bytes() == good and ran_stages(out) <= {"check", "screen@shuffled-1"}  # nothing after it reran
    assert dvc_clean(sh(root, "dvc", "status").stdout)


def test_snakemake_lint_is_clean(tmp_path: Path):
    root = copy_project(tmp_path)
    import shutil

    shutil.copytree(ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    proc = sh(root, "snakemake", "--lint", check=False)
    out = proc.stdout + proc.stderr
    # one lint is by design: every job's command ends in PARAMS_ARG ("" for params.yaml, else
    # `--params <the resolved file>`); as a rule `params:` entry it would rerun every job when a run
    # goes from params.yaml to --config overrides, though the params each job reads are its own
    # `params:` entries already (README: Pools side by side)
    lints = re.findall(r"^\s+\* (.+)$", out, re.M)
    assert lints and set(lints) == {"Shell command directly uses variable PARAMS_ARG from outside of the rule:"}, out[-3000:]
    assert out.count("Lints for rule") == 8 and "Lints for snakefile" not in out  # the 8 rules that run a stage


# -- the SLURM profile on a real single-node SLURM started by the test (skipped, with the reason
# printed, where SLURM cannot be started: not root, no packages). Here, not in a file of its own:
# it compares with the local run (smk_run) that this file's worker builds anyway.


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from slurm_cluster import Cluster, why_not_available

    reason = why_not_available()
    if reason:
        print(f"SKIP slurm: {reason}")
        pytest.skip(reason)
    c = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.mark.slurm
def test_profile_runs_the_pipeline_on_slurm(cluster, tmp_path, raw_dir, smk_run):
    local, params = smk_run
    on_slurm = make_project(tmp_path / "slurm", raw_dir, params)
    # one seed and one final method (--config overrides, which every submitted job's snakemake
    # receives too): the seed-0 runs are the local run's seed-0 runs
    params = dict(params, seeds=[0], final=dict(params["final"], methods=["single"]))
    proc = sh(
        on_slurm, "timeout", "-s", "INT", "-k", "10", "480",
        "snakemake", "--profile", "profiles/slurm", "--config", "seeds=[0]", "final={methods: [single]}",
        # this test cluster's partition and account instead of the profile's placeholders
        "--default-resources", f"slurm_partition={cluster.partition}", "slurm_account=root", "runtime=30", "mem_mb=2000",
        "--slurm-init-seconds-before-status-checks", "2",
    )
    out = proc.stdout + proc.stderr
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", out)
    # every job but fetch (a localrule; the archive is already there) went through sbatch:
    # prepare and features per task, then training, selection and report
    n_jobs = 2 * len(params["tasks"]) + len(params["seeds"]) * (
        1 + len(params["candidates"]) + 1 + len(params["final"]["methods"])) + 2  # + the null candidate's screens
    assert len(set(submitted)) == n_jobs, out[-3000:]
    check_results(on_slurm, params)
    assert "--params .auxsel/params.resolved.yaml" in out  # the jobs read the params Snakemake resolved
    slurm, here = metrics_of(on_slurm, params), metrics_of(local, params)
    assert len(slurm) > 10 and slurm == {k: here[k] for k in slurm}
    selection = lambda root: json.loads((root / "results/selection.json").read_text())  # noqa: E731
    assert selection(on_slurm)["null"]["dev"]["0"] == selection(local)["null"]["dev"]["0"]
    assert selection(on_slurm)["baseline_dev"]["0"] == selection(local)["baseline_dev"]["0"]
