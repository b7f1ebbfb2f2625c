"""The SLURM profile on a real single-node SLURM started by the test.

Skipped, with the reason printed, where SLURM cannot be started (not root, no packages).
"""

from __future__ import annotations

import json
import re

import pytest

from slurm_cluster import Cluster, why_not_available
from test_pipeline import check_results, make_project, metrics_of, sh

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
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


def test_profile_runs_the_pipeline_on_slurm(cluster, tmp_path, raw_dir, smk_run):
    local, params = smk_run
    on_slurm = make_project(tmp_path / "slurm", raw_dir, params)
    proc = sh(
        on_slurm, "timeout", "-s", "INT", "-k", "10", "480",
        "snakemake", "--profile", "profiles/slurm",
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
    assert metrics_of(on_slurm, params) == metrics_of(local, params)
    selection = lambda root: json.loads((root / "results/selection.json").read_text())  # noqa: E731
    assert selection(on_slurm) == selection(local)
