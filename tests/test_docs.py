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
    # the bit-identity record beside it: every number of the selection and report compared exactly
    from default_run import bit_identity

    n = bit_identity(saved, sel, report)
    assert n.startswith("bit-identical to the committed run: all ") and int(n.split("all ")[1].split()[0]) > 50
    nudged = json.loads(json.dumps(sel))
    nudged["candidates"][0]["weight_mean"] += 1e-12  # far inside the tolerance, not bit-identical
    assert bit_identity(saved, nudged, report) == (
        "not bit-identical: 1 of {} numbers differ, largest |diff| 1e-12 at selection.candidates[0].weight_mean"
        .format(int(n.split("all ")[1].split()[0])))


def test_a_variant_of_the_default_run_cannot_be_checked_against_the_readme():
    """`--avil` runs a variant of the default run to its own file; `--check` is for the shipped params only."""
    proc = subprocess.run([sys.executable, str(ROOT / "bench/default_run.py"), "--check", "--avil", '{"dev_batch": 128}'],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "--check compares the shipped params' run" in proc.stderr
