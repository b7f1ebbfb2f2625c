"""README's generated tables are copies of bench/results, never typed (bench/update_readme.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "update_readme.py"


def test_readme_blocks_match_the_bench_results():
    blocks = ROOT.joinpath("README.md").read_text().count("<!-- bench:")
    assert blocks >= 1
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_a_typed_number_in_a_block_is_caught(tmp_path: Path):
    text = ROOT.joinpath("README.md").read_text()
    start = text.index("<!-- bench:")
    line_end = text.index("\n", start) + 1
    edited = text[:line_end] + "| typed | 0.999 |\n" + text[line_end:]
    readme = tmp_path / "README.md"
    readme.write_text(edited)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check", "--readme", str(readme)], capture_output=True, text=True)
    assert proc.returncode == 1 and "generated blocks differ from bench/results" in proc.stderr
    subprocess.run([sys.executable, str(SCRIPT), "--readme", str(readme)], check=True)
    assert "| typed | 0.999 |" not in readme.read_text()  # rewriting restores the file's table


def test_the_ci_check_of_the_default_run_catches_a_stale_readme():
    """`bench/default_run.py --check` (run by .ci/run) compares a rerun with the committed results."""
    import json

    sys.path.insert(0, str(ROOT / "bench"))
    from default_run import compare

    saved = json.loads((ROOT / "bench/results/default_run.json").read_text())
    sel, report = saved["selection"], saved["report"]
    assert compare(saved, sel, report, 0.005) == []
    moved = json.loads(json.dumps(report))
    method = sorted(moved["test"])[0]
    moved["test"][method]["mean"] += 0.004
    assert compare(saved, sel, moved, 0.005) == []  # within the tolerance
    moved["test"][method]["mean"] += 0.002
    assert compare(saved, sel, moved, 0.005) == [
        f"{method} test mean {moved['test'][method]['mean']:.4f}, README {report['test'][method]['mean']:.4f} (tolerance 0.005)"]
    other = dict(sel, selected=sel["selected"] + ["shuffled"])
    assert compare(saved, other, report, 0.005)[0].startswith("selected [")
    # the report's recommended final is part of the answer too (once the README has one)
    rec = dict(report, recommended={"method": "fixed", "reason": "none beats fixed"})
    with_rec = dict(saved, report=rec)
    assert compare(with_rec, sel, rec, 0.005) == []
    assert compare(with_rec, sel, dict(rec, recommended={"method": "uniform_all"}), 0.005) == [
        "recommended final uniform_all, README recommends fixed"]
    # the bit-identity record beside it: every number of the selection and report compared exactly
    from default_run import bit_identity

    n = bit_identity(saved, sel, report)
    assert n.startswith("bit-identical to the committed run: all ") and int(n.split("all ")[1].split()[0]) > 50
    nudged = json.loads(json.dumps(sel))
    nudged["candidates"][0]["weight_mean"] += 1e-12  # far inside the tolerance, not bit-identical
    assert bit_identity(saved, nudged, report) == (
        "not bit-identical: 1 of {} numbers differ, largest |diff| 1e-12 at selection.candidates[0].weight_mean"
        .format(int(n.split("all ")[1].split()[0])))


def test_the_check_compares_exactly_only_within_a_cpu_kind_and_up_to_seed_noise_across_kinds():
    """Another CPU vendor's kernels turn the default run into another replication (measured: Intel vs
    AMD, both AVX512); the check then compares with that kind's own record, or with seed noise."""
    import json

    sys.path.insert(0, str(ROOT / "bench"))
    from default_run import code_digest, consistent, kind, reference

    saved = json.loads((ROOT / "bench/results/default_run.json").read_text())
    # the digest names the code a run came from (a record of other code than the README run's is stale);
    # that the README run is this checkout's is what `--check` itself tests, by rerunning it
    assert len(saved["code_sha256"]) == 16 and len(code_digest(ROOT)) == 16
    records = json.loads((ROOT / "bench/results/default_run_machines.json").read_text())["runs"]
    same = dict(saved["machine"], boot_id="another VM instance")
    assert reference(saved, same, records)[0] is saved  # same kind: the README's run itself
    for k, rec in records.items():
        assert kind(rec["machine"]) == k
        if rec["code_sha256"] != saved["code_sha256"]:  # kept for the record's table, never compared with
            assert reference(saved, rec["machine"], records) == (
                None, "this CPU kind's record is from other code than the README's run (stale)")
            continue
        assert reference(saved, rec["machine"], records)[0] is rec
        # the recorded kind's run is the README's up to seed noise, though its selection may differ
        problems, _ = consistent(saved, rec["selection"], rec["report"], 3.29)
        assert problems == []
        stale = {k: dict(rec, code_sha256="0" * 16)}
        assert reference(saved, rec["machine"], stale) == (
            None, "this CPU kind's record is from other code than the README's run (stale)")
    unknown = dict(saved["machine"], cpu="a CPU nobody ran")
    assert reference(saved, unknown, records) == (None, "no run recorded for this CPU kind")
    # beyond seed noise: a final mean moved by 4 of its standard errors, a gain by 10
    report = json.loads(json.dumps(saved["report"]))
    t = report["test"]["single"]
    se = (2 * t["std"] ** 2 / t["n_seeds"]) ** 0.5
    t["mean"] += 4 * se
    sel = json.loads(json.dumps(saved["selection"]))
    row = sel["candidates"][0]
    row["null_gain_mean"] += 10 * row["null_gain_std"] if "null_gain_std" in row else 10 * row["null_gain_se"]
    problems, _ = consistent(saved, sel, report, 3.29)
    assert sorted(p.split(" ")[0] for p in problems) == sorted([f"{row['aux']}:", "single"])
    assert any(p.startswith(f"{row['aux']}: gain over the null") for p in problems)


def test_a_variant_of_the_default_run_cannot_be_checked_against_the_readme():
    """`--avil` runs a variant of the default run to its own file; `--check` is for the shipped params only."""
    proc = subprocess.run([sys.executable, str(ROOT / "bench/default_run.py"), "--check", "--avil", '{"dev_batch": 128}'],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "--check and --record-machine are for the shipped params' run" in proc.stderr


def test_a_train_variant_changes_the_train_section_only_and_names_itself():
    """`--train` (e.g. longer screens) is a variant like `--avil`: laid over the train section only
    (the finals keep final.train), written into the results' command line, never to the shipped file."""
    import argparse

    import pytest
    import yaml

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_args import add_variant_args, apply_variant, check_variant, variant_command

    ap = argparse.ArgumentParser()
    add_variant_args(ap, "selection_power")
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    args = ap.parse_args(["--train", '{"epochs": 30}', "--results", "selection_power_ep30"])
    out = apply_variant(shipped, args)
    assert out["train"] == {**shipped["train"], "epochs": 30} and shipped["train"]["epochs"] != 30
    assert out["final"] == shipped["final"] and out["avil"] == shipped["avil"] and out["tasks"] == shipped["tasks"]
    assert variant_command(args, "selection_power") == """ --train '{"epochs": 30}' --results selection_power_ep30"""
    with pytest.raises(SystemExit, match="--train make a variant: give it its own --results name"):
        check_variant(ap.parse_args(["--train", '{"epochs": 20}']), "selection_power")


def test_paired_screens_say_what_they_need_before_training_anything(tmp_path):
    """bench/paired_uniform.py trains inside a finished project: it names a missing project result, a
    variant without a label (its runs would land among the uniform ones) and a call without candidates."""
    tool = str(ROOT / "bench/paired_uniform.py")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, tool, "--project", str(tmp_path), *args], capture_output=True, text=True)

    proc = run("--candidates", "left_more")
    assert proc.returncode == 1 and f"{tmp_path}: no results/selection.json" in proc.stderr
    proc = run("--candidates", "left_more", "--avil", '{"merge_step": "own"}')
    assert proc.returncode == 1 and "--avil: name the variant with --label" in proc.stderr
    proc = run()
    assert proc.returncode == 1 and "--candidates: name at least one candidate" in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing written
