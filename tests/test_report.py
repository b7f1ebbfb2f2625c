"""The report stage on fixture artifacts written here with the pipeline's own writers and column sets
(`auxsel.runs.write_result`, the real select stage): the page shows exactly the artifacts' numbers,
its figures are real images that a browser loads, and DVC and Snakemake read its outputs."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from auxsel import artifacts, runs
from auxsel import params as auxsel_params
from conftest import ROOT, bin_path, copy_project, run_stage

TARGET = "left"
CANDIDATES = ["left_more", "right", "shuffled"]
SEEDS = [0, 1]
METHODS = ["single", "uniform_all", "avil_all", "diw_all", "fixed", "avil"]
EPOCHS = 3
BASE_DEV = {0: 0.600, 1: 0.620}
# candidate: (paired dev gain per seed, final screened weight per seed). left_more passes the rule;
# right gains but its weight is below min_weight; shuffled's interval is below min_gain.
SCREEN = {"left_more": ([0.05, 0.06], [0.85, 0.80]), "right": ([0.04, 0.05], [0.20, 0.25]), "shuffled": ([-0.03, -0.05], [0.50, 0.55])}
NULL_GAIN = [0.0, 0.01]  # the null candidate's screens: what the machinery gives by itself
FIGURES = ["gains", "screen_weights", "final_test", "final_weights"]
CHROMIUM = "/usr/bin/chromium"
ENV_EXTRA = {"DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def fixture_params() -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["candidates"] = list(CANDIDATES)
    params["tasks"] = {k: v for k, v in params["tasks"].items() if k in {TARGET, *CANDIDATES}}
    params["seeds"] = list(SEEDS)
    params["train"]["epochs"] = EPOCHS
    params["final"]["methods"] = list(METHODS)
    params["final"]["train"] = {}
    params["select"]["min_weight"] = 0.5  # the fixture's weights: right is dropped for its weight
    params["select"]["dev_variance"] = False  # the fixture's runs have metrics, not per-example answers
    return params


def sh(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": bin_path(), **ENV_EXTRA}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


# ---------------------------------------------------------------------------------------------
# fixture artifacts


def _provenance(folder: Path, stage: str, rng, name: str = "provenance.json", **params) -> None:
    artifacts.write_json({
        "stage": stage, "params": params, "params_hash": artifacts.params_hash({"stage": stage, **params}),
        "git": {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": False},
        "packages": {"auxsel": "0.1.0", "torch": "2.13.0+cpu", "numpy": "2.4.6", "python": "3.11.7"},
        "device": "cpu", "host": "fixture-host", "start": "2026-11-25T10:00:00+0000", "end": "2026-11-25T10:01:00+0000",
        "wall_seconds": round(float(rng.uniform(1, 60)), 3), "inputs": {},
    }, folder / name)


def _run(folder: Path, stage: str, method: str, aux: list[str], seed: int, dev: float, test: float,
         weights: dict[str, list[float]], rng, learned: bool) -> None:
    tasks = [TARGET, *aux]
    history, wrows = [], []
    for e in range(1, EPOCHS + 1):
        for t in tasks:
            history.append({"epoch": e, "task": t, "split": "train", "loss": float(rng.uniform(0.5, 2)), "metric": float(rng.uniform(0.2, 0.9)), "seconds": 1.5})
        history.append({"epoch": e, "task": TARGET, "split": "dev", "loss": float(rng.uniform(0.5, 2)),
                        "metric": dev if e == EPOCHS else float(dev - 0.1 * (EPOCHS - e) + rng.uniform(-0.01, 0.01)), "seconds": 1.5})
        for t in tasks:
            row = {"epoch": e, "task": t, "weight": weights[t][e - 1], "alpha": float(rng.uniform(0, 2)) if learned else math.nan}
            if learned and method.startswith("avil"):
                row.update(delta_norm=float(rng.uniform(0.1, 1)), cos_target=float(rng.uniform(-1, 1)), dev_loss_before=1.2,
                           dev_loss_init=1.1, dev_loss_after=1.0, alpha_evals=5, update_seconds=1.0, solve_seconds=0.1)
            wrows.append(row)
    metrics = ({"dev": {"accuracy": dev, "loss": 1.0}, "holdout": {"accuracy": dev, "loss": 1.0}}
               | ({"test": {"accuracy": test, "loss": 1.1}} if test is not None else {}))
    folder.mkdir(parents=True)
    runs.write_result(folder, SimpleNamespace(metrics=metrics, history=history, weights=wrows), stage, method, TARGET, aux, seed)
    artifacts.write_json({"final_weights": {t: w[-1] for t, w in weights.items()}, "best_epoch": EPOCHS, "epochs_run": EPOCHS,
                          "metrics": metrics}, folder / "summary.json")
    _provenance(folder, stage, rng, method=method, auxiliaries=aux, seed=seed)
    artifacts.write_manifest(folder, f"python -m stages.{stage} (fixture)")  # what every reader checks first


def _path(final: float, rng) -> list[float]:
    """A weight trajectory from 1 to `final` over the epochs."""
    return [float(1 + (final - 1) * e / EPOCHS + (rng.uniform(-0.02, 0.02) if e < EPOCHS else 0)) for e in range(1, EPOCHS + 1)]


def write_fixture(root: Path) -> None:
    rng = np.random.default_rng(7)
    (root / "data/raw/mnist").mkdir(parents=True)
    (root / "data/raw/mnist/mnist.pkl.gz").write_bytes(b"fixture")
    for task in [TARGET, *CANDIDATES]:
        d = root / "data/prepared" / task
        d.mkdir(parents=True)
        artifacts.write_json({"metric": "accuracy", "num_classes": 10,
                              "counts": {"train": 1000, "dev": 500, "test": 2000}}, d / "meta.json")
        _provenance(d, "prepare", rng, task=task)
    res = root / "results"
    one = lambda: [1.0] * EPOCHS  # noqa: E731
    for s in SEEDS:
        _run(res / "baseline" / TARGET / f"seed-{s}", "baseline", "single", [], s, BASE_DEV[s], None, {TARGET: one()}, rng, False)
        for aux, (gains, finals) in SCREEN.items():
            _run(res / "screen" / aux / f"seed-{s}", "screen", "avil", [aux], s, BASE_DEV[s] + gains[s], None,
                 {TARGET: one(), aux: _path(finals[s], rng)}, rng, True)
        _run(res / "screen" / "_null" / f"seed-{s}", "screen", "avil", ["_null"], s, BASE_DEV[s] + NULL_GAIN[s], None,
             {TARGET: one(), "_null": _path(0.5, rng)}, rng, True)
    # the real selection stage decides on these numbers
    run_stage(root, "select")
    selected = json.loads((res / "selection.json").read_text())["selected"]
    assert selected == ["left_more"]
    for m in METHODS:
        aux = [] if m == "single" else CANDIDATES if m.endswith("_all") else selected
        for s in SEEDS:
            if m in ("single", "uniform_all"):
                w = {t: one() for t in [TARGET, *aux]}
            elif m == "fixed":
                w = {TARGET: one(), **{a: [0.825] * EPOCHS for a in aux}}
            else:
                w = {TARGET: one(), **{a: _path(float(rng.uniform(0.2, 1.2)), rng) for a in aux}}
            _run(res / "final" / m / f"seed-{s}", "final", m, aux, s, float(rng.uniform(0.55, 0.65)),
                 round(float(rng.uniform(0.5, 0.7)), 4), w, rng, m not in ("single", "uniform_all", "fixed"))


def new_project(root: Path, params: dict) -> Path:
    copy_project(root)
    shutil.copytree(ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_fixture(root)
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict, str]:
    """A fixture project with the report built by the stage; (root, params, stdout)."""
    params = fixture_params()
    root = new_project(tmp_path_factory.mktemp("report"), params)
    proc = run_stage(root, "report")
    return root, params, proc.stdout


# ---------------------------------------------------------------------------------------------
# reading the page back


class Page(HTMLParser):
    """Collects table rows (their attributes and cells: data-key -> (data-value, text)), images and <body> attributes."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[dict]] = {}
        self.images: list[dict[str, str]] = []
        self.body: dict[str, str] = {}
        self.ids: dict[str, str] = {}
        self._table = self._row = self._cell = None
        self._id_text: tuple[str, list[str]] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        elif tag == "table":
            self._table = a.get("id")
            self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table:
            self._row = {"attrs": a, "cells": {}}
        elif tag == "td" and self._row is not None:
            self._cell = [a.get("data-key"), a.get("data-value"), []]
        elif tag == "img":
            self.images.append(a)
        if a.get("id") and tag in ("code", "span"):
            self._id_text = (a["id"], [])

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None and self._row is not None:
            key, value, text = self._cell
            if key:
                self._row["cells"][key] = (value, "".join(text).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row["cells"]:
                self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag in ("code", "span") and self._id_text:
            self.ids[self._id_text[0]] = "".join(self._id_text[1])
            self._id_text = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[2].append(data)
        if self._id_text:
            self._id_text[1].append(data)


def page_of(root: Path) -> Page:
    return Page((root / "results/report/index.html").read_text(encoding="utf-8"))


def test_screening_table_shows_the_selection_artifacts(built):
    root, _, _ = built
    rows = pq.read_table(root / "results/selection.parquet").to_pylist()
    shown = page_of(root).tables["screening-table"]
    assert [r["attrs"]["data-aux"] for r in shown] == [r["aux"] for r in rows]
    formats = {"rank": "d", "n_seeds": "d", "weight_mean": ".3f", "weight_std": ".3f", "gain_mean": "+.4f", "gain_std": ".4f",
               "gain_ci_low": "+.4f", "gain_ci_high": "+.4f", "p_holm": ".3f", "null_gain_mean": "+.4f",
               "null_p_holm": ".3f"}
    for want, got in zip(rows, shown):
        cells = got["cells"]
        for key, fmt in formats.items():
            value, text = cells[key]
            assert float(value) == want[key], key  # the exact number, not a rounding of it
            assert text == format(want[key], fmt), key
        assert cells["selected"][0] == str(want["selected"]).lower()
        assert cells["selected"][1] == ("selected" if want["selected"] else "dropped")
        assert cells["reason"][1] == want["reason"]
    decision = {r["aux"]: r["reason"] for r in rows}
    assert decision["left_more"].startswith("gain over the null above +0.0000 (Holm p")
    assert decision["right"].startswith("weight ")
    assert decision["shuffled"].startswith("gain over the null candidate -0.0450 not above min_gain")
    assert "mean gain over single-task -0.0400 <= min_gain +0.0000" in decision["shuffled"]
    assert json.loads((root / "results/selection.json").read_text())["candidates"] == rows


def test_the_selection_says_what_its_seeds_can_detect(built):
    """The power statement from the fixture's gains over the null (left_more +0.05, +0.05; right
    +0.04, +0.04; shuffled -0.03, -0.06): pooled sd from shuffled alone, between 1 (a candidate's
    own) and 3 (pooled) degrees of freedom at 2 seeds (variance: moderated), Holm's first step 0.1/3;
    shown on the page as written."""
    from auxsel.report import power_sentence
    from auxsel.select import detectable_gain

    root, _, _ = built
    power = json.loads((root / "results/selection.json").read_text())["power"]
    sd = math.sqrt(2 * 0.015**2 / 3)
    assert power["sd"] == pytest.approx(sd) and power["seeds"] == 2 and power["candidates"] == 3
    assert 1 <= power["df"] <= 3
    assert power["detectable_gain"] == pytest.approx(detectable_gain(sd, 2, power["df"], 0.1 / 3))
    assert power["detectable_gain"] > 2 * sd  # 2 seeds: only a gain of several spreads is kept reliably
    assert power["seeds_for_detect"] > 2
    text = (root / "results/report/index.html").read_text(encoding="utf-8")
    assert html.escape(power_sentence(power)) in text


def test_final_table_shows_the_final_metrics(built):
    root, params, _ = built
    page = page_of(root)
    shown = {r["attrs"]["data-method"]: r for r in page.tables["final-table"]}
    assert list(shown) == METHODS
    means = {}
    for m in METHODS:
        values = []
        for s in SEEDS:
            rows = pq.read_table(root / f"results/final/{m}/seed-{s}/metrics.parquet").to_pylist()
            values += [r["value"] for r in rows if r["split"] == "test" and r["metric"] == "accuracy"]
        assert len(values) == len(SEEDS)
        means[m] = statistics.fmean(values)
        cells = shown[m]["cells"]
        assert float(cells["mean"][0]) == pytest.approx(means[m], rel=1e-12) and cells["mean"][1] == f"{float(cells['mean'][0]):.4f}"
        assert float(cells["std"][0]) == pytest.approx(statistics.stdev(values), rel=1e-12)
        assert int(cells["n_seeds"][0]) == len(SEEDS)
        assert cells["values"][1] == ", ".join(f"{v:.4f}" for v in values)
    best = max(means, key=means.get)
    assert [m for m, r in shown.items() if r["attrs"]["data-best"] == "true"] == [best]
    assert "★ best" in shown[best]["cells"]["method"][1]
    # metrics.json (dvc metrics) carries the same numbers
    metrics = json.loads((root / "results/report/metrics.json").read_text())
    assert metrics["selected"] == ["left_more"] and metrics["n_selected"] == 1 and metrics["best"] == [best]
    assert {m: v["mean"] for m, v in metrics["test"].items()} == pytest.approx(means, rel=1e-12)
    sel = pq.read_table(root / "results/selection.parquet").to_pylist()
    assert {a: v["gain"] for a, v in metrics["screen"].items()} == {r["aux"]: r["gain_mean"] for r in sel}


def test_provenance_and_plot_data(built):
    root, params, _ = built
    page = page_of(root)
    records = [json.loads(p.read_text()) for p in sorted((root / "results").rglob("provenance.json")) if "report" not in p.parts]
    records += [json.loads((root / "results/selection.provenance.json").read_text())]
    records += [json.loads(p.read_text()) for p in sorted((root / "data/prepared").rglob("provenance.json"))]
    stages = {r["attrs"]["data-stage"]: r["cells"] for r in page.tables["stages-table"]}
    assert set(stages) == {"prepare", "baseline", "screen", "select", "final"}
    for stage, cells in stages.items():
        walls = [r["wall_seconds"] for r in records if r["stage"] == stage]
        assert int(cells["jobs"][0]) == len(walls)
        assert float(cells["wall_seconds"][0]) == pytest.approx(sum(walls), rel=1e-12)
        assert float(cells["max_wall_seconds"][0]) == max(walls)
        assert set(cells["params_hashes"][1].split()) == {r["params_hash"] for r in records if r["stage"] == stage}
        assert cells["devices"][1] == "cpu"
    checked = auxsel_params.load(root / "params.yaml", root / "workflow/schemas/params.schema.yaml")  # as the stage reads it
    assert page.ids["params-hash"] == artifacts.params_hash(checked)
    assert "0123456789abcdef0123456789abcdef01234567" in stages["final"]["commits"][1]
    packages = {r["attrs"]["data-package"]: r["cells"]["versions"][1] for r in page.tables["packages-table"]}
    assert packages["torch"] == "2.13.0+cpu" and packages["auxsel"] == "0.1.0"
    # the per-epoch CSVs for dvc plots: one column per candidate / method, means over seeds
    import csv

    with open(root / "results/report/screen_weights.csv") as fh:
        screen = list(csv.DictReader(fh))
    assert list(screen[0]) == ["epoch", *CANDIDATES] and [int(r["epoch"]) for r in screen] == list(range(1, EPOCHS + 1))
    for aux in CANDIDATES:
        per_seed = [pq.read_table(root / f"results/screen/{aux}/seed-{s}/weights.parquet").to_pylist() for s in SEEDS]
        for r in screen:
            w = [x["weight"] for rows in per_seed for x in rows if x["task"] == aux and x["epoch"] == int(r["epoch"])]
            assert float(r[aux]) == pytest.approx(statistics.fmean(w), rel=1e-12)
    with open(root / "results/report/final_dev.csv") as fh:
        dev = list(csv.DictReader(fh))
    assert list(dev[0]) == ["epoch", *METHODS]
    last = [pq.read_table(root / f"results/final/avil/seed-{s}/metrics.parquet").to_pylist() for s in SEEDS]
    want = statistics.fmean(r["value"] for rows in last for r in rows if r["split"] == "dev" and r["metric"] == "accuracy")
    assert float(dev[-1]["avil"]) == pytest.approx(want, rel=1e-12)


def test_figures_are_real_images(built):
    import matplotlib.image as mpimg

    root, _, _ = built
    page = page_of(root)
    embedded = {img["data-file"]: img["src"] for img in page.images if "figure" in img.get("class", "")}
    assert sorted(embedded) == sorted(f"figures/{f}.png" for f in FIGURES)
    for name in FIGURES:
        path = root / "results/report/figures" / f"{name}.png"
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        src = embedded[f"figures/{name}.png"]
        assert src.startswith("data:image/png;base64,") and base64.b64decode(src.split(",", 1)[1]) == data
        img = mpimg.imread(io.BytesIO(data), format="png")
        h, w = img.shape[:2]
        assert 400 <= w <= 3000 and 250 <= h <= 3000, (name, w, h)
        rgb = img[..., :3].reshape(-1, 3)
        assert rgb.std() > 0.05 and len(np.unique((rgb * 255).astype(np.uint8), axis=0)) > 50, name  # drawn, not blank
    # final weights: the learned runs get panels, the fixed ones are named as not drawn
    text = (root / "results/report/index.html").read_text(encoding="utf-8")
    assert "(avil_all, diw_all, avil)" in text and "fixed weights: single, uniform_all, fixed" in text


def test_terminal_summary(built):
    root, _, out = built
    lines = out.splitlines()
    for aux, verdict in (("left_more", "KEEP"), ("right", "drop"), ("shuffled", "drop")):
        assert any(line.split()[1:2] == [aux] and f" {verdict}: " in line for line in lines), aux
    assert "selected: left_more" in out
    for m in METHODS:
        assert any(line.split()[:1] == [m] for line in lines), m
    best = json.loads((root / "results/report/metrics.json").read_text())["best"]
    assert [line.split()[0] for line in lines if line.split()[:1] in ([m] for m in METHODS) and " * " in line] == best


def test_missing_input_is_one_line_exit_2(tmp_path: Path, built):
    root, _, _ = built
    shutil.copytree(root, tmp_path / "p", symlinks=True)
    (tmp_path / "p/results/final/diw_all/seed-1/metrics.parquet").unlink()
    proc = run_stage(tmp_path / "p", "report", check=False)
    assert proc.returncode == 2
    # a file missing from a finished run folder: the folder is removed, so both tools rerun its job
    assert proc.stderr.strip() == ("error: results/final/diw_all/seed-1/metrics.parquet: missing; removed results/final/diw_all/seed-1: "
                                   "rebuild with `snakemake --cores N` or `dvc repro` (its job: python -m stages.final (fixture))")
    assert not (tmp_path / "p/results/final/diw_all/seed-1").exists()
    proc = run_stage(tmp_path / "p", "report", check=False)
    assert proc.stderr.strip() == "error: results/final/diw_all/seed-1 is missing; rebuild with `snakemake --cores N` or `dvc repro`"


def test_one_seed_has_no_spread_and_no_interval():
    """With one seed the std is undefined and the interval unbounded: shown as n/a and ±∞, drawn as arrows."""
    from auxsel.report import final_table, plots
    from auxsel.report.html import page

    rows = final_table([{"method": "single", "auxiliaries": "", "seed": 0, "split": "test", "metric": "accuracy", "value": 0.5}], "accuracy")
    assert rows[0]["best"] and math.isnan(rows[0]["std"])
    cand = [{"aux": "a", "n_seeds": 1, "weight_mean": 0.5, "weight_std": 0.0, "gain_mean": 0.01, "gain_std": 0.0, "gain_ci_low": -math.inf,
             "gain_ci_high": math.inf, "selected": False, "rank": 1, "reason": "gain interval low -inf <= min_gain +0.0000"}]
    png = plots.gains_forest(cand, "accuracy", 0.9, 0.0, "t")
    assert png[:4] == b"\x89PNG"
    sel = {"target": "t", "metric": "accuracy", "rule": {"min_gain": 0.0, "min_weight": 0.3, "top_k": 3, "confidence": 0.9}, "baseline_dev": {"0": 0.5}}
    text = page(sel, cand, rows, [], [], "", {"stages": [], "packages": {}, "jobs": []}, "h", {})
    p = Page(text)
    cells = p.tables["screening-table"][0]["cells"]
    assert cells["gain_ci_low"] == ("-inf", "−∞") and cells["gain_ci_high"] == ("inf", "+∞")
    assert p.tables["final-table"][0]["cells"]["std"] == ("nan", "n/a")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent (Debian: apt-get install chromium)")
def test_page_loads_its_figures_in_headless_chromium(built):
    root, _, _ = built
    page = root / "results/report/index.html"
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
             page.as_uri()],
            capture_output=True, text=True, timeout=60,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = Page(proc.stdout)
    assert dom.body.get("data-figures-total") == str(len(FIGURES)), proc.stdout[:500]
    assert dom.body["data-figures-loaded"] == str(len(FIGURES))  # every <img> decoded by the browser
    import matplotlib.image as mpimg

    for img in (i for i in dom.images if "figure" in i.get("class", "")):
        h, w = mpimg.imread(root / "results/report" / img["data-file"]).shape[:2]
        assert (int(img["data-natural-width"]), int(img["data-natural-height"])) == (w, h)


def test_dvc_runs_the_report_and_reads_its_metrics_and_plots(tmp_path: Path, built):
    root, params, _ = built
    proj = tmp_path / "dvc"
    shutil.copytree(root, proj, symlinks=True)
    shutil.rmtree(proj / "results/report")
    sh(proj, "git", "init", "-q")
    sh(proj, "dvc", "init", "-q")
    # only the report stage runs (after the params check, whose stamp it needs); its inputs are the fixture artifacts
    sh(proj, "dvc", "repro", "check")
    out = sh(proj, "dvc", "repro", "--single-item", "report").stdout
    assert "Running stage 'report'" in out
    shown = json.loads(sh(proj, "dvc", "metrics", "show", "--json").stdout)[""]["data"]["results/report/metrics.json"]["data"]
    written = json.loads((proj / "results/report/metrics.json").read_text())
    assert shown["test"] == written["test"] and shown["n_selected"] == 1
    plots = json.loads(sh(proj, "dvc", "plots", "show", "--json").stdout)["data"]
    series = {}
    for name, items in plots.items():
        for item in items:
            if item["type"] == "vega":
                series[name] = {v["field"] for v in item["content"]["data"]["values"]}
    by_file = {frozenset(v) for v in series.values()}
    assert frozenset(CANDIDATES) in by_file and frozenset(METHODS) in by_file, series
    images = {name for name, items in plots.items() if any(i["type"] == "image" for i in items)}
    assert {f"results/report/figures/{f}.png" for f in FIGURES} <= images
    # a second experiment: metrics diff sees the changed number
    sh(proj, "git", "add", "-A")
    sh(proj, "git", "commit", "-qm", "fixture")
    m = json.loads((proj / "results/report/metrics.json").read_text())
    m["test"]["single"]["mean"] += 0.01
    (proj / "results/report/metrics.json").write_text(json.dumps(m))
    diff = json.loads(sh(proj, "dvc", "metrics", "diff", "--json").stdout)
    assert diff["results/report/metrics.json"]["test.single.mean"]["diff"] == pytest.approx(0.01)


def test_snakemake_builds_its_report_with_our_figures(tmp_path: Path, built):
    root, params, _ = built
    proj = tmp_path / "smk"
    shutil.copytree(root, proj, symlinks=True)
    shutil.rmtree(proj / "results/report")
    # the fixture artifacts are up to date: only the report job runs
    out = sh(proj, "snakemake", "--cores", "1", "results/report/index.html")
    stats = out.stdout.split("Job stats:")[-1] + out.stderr.split("Job stats:")[-1]
    assert "report" in stats and not any(f"\n{r} " in stats for r in ("screen", "final", "select", "baseline", "prepare")), stats
    for f in FIGURES:
        assert (proj / f"results/report/figures/{f}.png").stat().st_size > 5000
    sh(proj, "snakemake", "--report", "report.html")
    text = (proj / "report.html").read_text(encoding="utf-8", errors="replace")
    assert len(text) > 50_000 and "auxsel: auxiliary-task selection for target" in text  # workflow/report/workflow.rst
    for label in ("dev gain per candidate", "screening weights per epoch", "test metric per method", "final-run weights per epoch"):
        assert label in text, label


def test_fit_warnings_name_the_share_fits_that_did_not_converge():
    """The rows of pair (b)'s avil_all seed 4 (bench/README.md), first task of each epoch: a fit out
    of budget that merged 36x the target's update; a converged fit and a run without fit columns
    (uniform) give no line."""
    from auxsel.report import fit_warnings

    def row(epoch, converged, stop, step, temp, before, source="fit"):
        return {"epoch": epoch, "task": "right", "fit_converged": converged, "fit_stop": stop, "fit_evals": 30 if stop == "budget" else 9,
                "fit_grad_max": 0.0045, "step": step, "temperature": temp, "dev_loss_before": before, "merged_from": source}

    runs = {"final/avil_all seed 4": [row(1, False, "budget", 36.122, 21.654, 2.312), row(2, True, "value", 1.0, 1000.0, 40.221)],
            "screen/left seed 0": [row(1, True, "gradient", 0.9, 1.1, 2.30), row(2, True, "value", 1.0, 1.0, 1.9)],
            "final/uniform_all seed 0": [{"epoch": 1, "task": "right", "weight": 1.0, "alpha": math.nan}],
            # today's code on the same epoch: the guard kept the mix out; a converged fit it guarded is named too
            "guarded seed 4": [{**row(1, False, "budget", 36.122, 21.654, 2.312, "own"), "dev_loss_fit": 40.22, "dev_loss_own": 2.265},
                               row(2, True, "value", 0.97, 0.57, 2.265),
                               row(3, True, "value", 9.0, 8.0, 1.7, "own"), row(4, True, "value", 1.0, 1.0, 1.5)]}
    assert fit_warnings(runs) == [
        "final/avil_all seed 4, epoch 1: share fit stopped on budget after 30 evaluations (largest gradient entry 0.0045); "
        "fitted step 36.12× the target's update at temperature 21.65; the next epoch's fit started at dev loss 40.2 "
        "(this one at 2.31)",
        "guarded seed 4, epoch 1: share fit stopped on budget after 30 evaluations (largest gradient entry 0.0045); "
        "fitted step 36.12× the target's update at temperature 21.65; the merge guard trained on from the target's own "
        "step (the fitted mix's untempered loss 40.2 was above both the epoch's start 2.31 and the target's own step "
        "2.27); the next epoch's fit started at dev loss 2.27 (this one at 2.31)",
        "guarded seed 4, epoch 3: share fit converged at step 9.00× the target's update at temperature 8.00; the merge "
        "guard trained on from the target's own step (the fitted mix's untempered loss was above both the epoch's start "
        "and the target's own step); the next epoch's fit started at dev loss 1.5 (this one at 1.7)"]


def test_the_report_says_how_often_the_merge_guard_shortened_a_mix():
    """merge_backtrack: a shortened merge is routine (most first fits on the frozen-encoder text
    pairs), so the report counts them in one sentence instead of one warning each."""
    from auxsel.report import shortened_merges

    def row(epoch, scale):
        return {"epoch": epoch, "task": "t", "merge_scale": scale, "fit_converged": True}

    runs = {"screen/a seed 0": [row(1, 0.25), row(1, 0.25), row(2, 1.0)], "screen/b seed 0": [row(1, 0.5), row(2, 0.0)],
            "final/uniform_all seed 0": [{"epoch": 1, "task": "t", "weight": 1.0}]}
    assert shortened_merges(runs) == (
        "The merge guard shortened 2 of 4 αVIL share fits' mixes along their own direction (to 1/2 to 1/4 of the "
        "fitted step) because the untempered model scored worse on the fitting batch than both the epoch's start "
        "and the target's own step")
    assert shortened_merges({"screen/a seed 0": [row(1, 1.0), row(2, 0.0)]}) is None


def test_merge_outcome_reads_how_a_fit_entered_training():
    """The one reading of a weights row that the report and both benches share."""
    from auxsel.report import merge_outcome

    base = {"dev_loss_before": 0.69, "dev_loss_own": 0.3, "merged_from": "fit"}
    assert merge_outcome({**base, "dev_loss_fit": 2.0, "dev_loss_merged": 2.0}) == "blown"  # > 2 × 0.69
    assert merge_outcome({**base, "dev_loss_fit": 1.3, "dev_loss_merged": 1.3}) == "fit"
    assert merge_outcome({**base, "dev_loss_fit": 2.0}) == "blown"  # rows before dev_loss_merged: the fit's
    assert merge_outcome({**base, "dev_loss_fit": 2.0, "dev_loss_merged": 0.5, "merge_scale": 0.25}) == "shortened"
    assert merge_outcome({**base, "merged_from": "own", "dev_loss_fit": 9.0, "merge_scale": 0.0}) == "own"
    assert merge_outcome({"epoch": 1, "task": "t", "weight": 1.0}) == "fit"  # α read-out rows


def test_the_recommended_final_is_the_paired_holdout_test_recomputed(built):
    """metrics.json and the page recommend what an independent recomputation from the finals'
    metrics.parquet gives: scipy's paired one-sided t test of each final's holdout accuracy against
    fixed's, Holm across the finals at select.level."""
    from scipy import stats

    root, params, stdout = built
    hold = {}
    for m in METHODS:
        for s in SEEDS:
            rows = pq.read_table(root / f"results/final/{m}/seed-{s}/metrics.parquet").to_pylist()
            hold.setdefault(m, []).extend(r["value"] for r in rows if r["split"] == "holdout" and r["metric"] == "accuracy")
    others = [m for m in METHODS if m != "fixed"]
    p = {m: stats.ttest_rel(hold[m], hold["fixed"], alternative="greater").pvalue for m in others}
    order = sorted(others, key=p.get)
    adjusted, running = {}, 0.0
    for j, m in enumerate(order):
        running = max(running, min(1.0, (len(others) - j) * p[m]))
        adjusted[m] = running
    level = params["select"].get("level", 0.1)
    winners = [m for m in others if adjusted[m] <= level and statistics.fmean(hold[m]) > statistics.fmean(hold["fixed"])]
    expected = max(winners, key=lambda m: statistics.fmean(hold[m])) if winners else "fixed"
    rec = json.loads((root / "results/report/metrics.json").read_text())["recommended"]
    assert rec["method"] == expected and rec["reference"] == "fixed" and rec["split"] == "holdout"
    for m in others:
        assert rec["holdout"][m]["p_holm"] == pytest.approx(adjusted[m], rel=1e-9)
        assert rec["holdout"][m]["diff_mean"] == pytest.approx(statistics.fmean(hold[m]) - statistics.fmean(hold["fixed"]))
    page = page_of(root)
    shown = {r["attrs"]["data-method"]: r for r in page.tables["recommend-table"]}
    assert [m for m, r in shown.items() if r["attrs"]["data-recommended"] == "true"] == [expected]
    assert float(shown["avil"]["cells"]["p_holm"][0]) == pytest.approx(adjusted["avil"], rel=1e-9)
    assert f"recommended final: {expected} (" in stdout


def _holdout_rows(values: dict[str, list[float]]) -> list[dict]:
    return [{"method": m, "seed": s, "split": "holdout", "metric": "accuracy", "value": v}
            for m, vs in values.items() for s, v in enumerate(vs)]


def test_recommend_moves_from_fixed_only_on_evidence():
    from auxsel.recommend import recommend

    fixed = [0.950, 0.948, 0.955, 0.951, 0.949]
    steady = [v + 0.015 + d for v, d in zip(fixed, [0.001, -0.002, 0.002, 0.0, -0.001])]  # +0.015, sd 0.0016
    noisy = [v + d for v, d in zip(fixed, [0.09, -0.07, 0.06, -0.05, 0.04])]  # best mean (+0.014), sd 0.068
    rec = recommend(_holdout_rows({"single": [v - 0.03 for v in fixed], "uniform_all": steady, "avil": noisy,
                                   "fixed": fixed}), "accuracy", 0.1)
    assert rec["method"] == "uniform_all" and rec["reference"] == "fixed"
    assert rec["reason"].startswith("uniform_all beats fixed on the holdout by +0.0150")
    row = {r["method"]: r for r in rec["rows"]}
    assert row["avil"]["diff_mean"] == pytest.approx(0.014) and not row["avil"]["beats_reference"]
    assert row["uniform_all"]["p_holm"] <= 0.1 < row["avil"]["p_holm"]
    # without the steady one, the noisy best mean does not move the recommendation
    rec = recommend(_holdout_rows({"avil": noisy, "fixed": fixed}), "accuracy", 0.1)
    assert rec["method"] == "fixed" and "no final beats fixed" in rec["reason"] and "closest: avil +0.0140" in rec["reason"]
    # equal differences on every seed: the floor (one holdout example) keeps the test finite
    tie = [v + 0.002 for v in fixed]
    assert recommend(_holdout_rows({"avil": tie, "fixed": fixed}), "accuracy", 0.1, sd_floor=1 / 1000)["method"] == "avil"
    assert recommend(_holdout_rows({"avil": tie, "fixed": fixed}), "accuracy", 0.1, sd_floor=1 / 50)["method"] == "fixed"
    # no holdout (train.dev_holdout: 0) or no final of the selection: no recommendation, and why
    none = recommend([dict(r, split="dev") for r in _holdout_rows({"avil": tie, "fixed": fixed})], "accuracy", 0.1)
    assert none["method"] is None and "train.dev_holdout is 0" in none["reason"]
    none = recommend(_holdout_rows({"single": fixed, "uniform_all": steady}), "accuracy", 0.1)
    assert none["method"] is None and "no final of the selection" in none["reason"]
