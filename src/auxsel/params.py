"""Loading and checking params.yaml.

The JSON-Schema says what each key may hold and gives defaults; the cross-key checks here say
what the schema cannot (the target is defined, archives cover the tasks, ...). Both Snakemake and
every stage module run the same checks, so a mistake is reported before any job starts, with the
key named.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from auxsel.errors import AuxselError
from auxsel.tasks.builtin import ARCHIVE_OF

MNIST_IMAGES = 70_000  # the pinned MNIST archive (train + validation + test)
NULL = "_null"  # the null candidate (auxsel.tasks.null): screened every seed, never selected


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; two tasks with one name is a mistake to report."""

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise AuxselError(f"params: duplicate key {key!r} (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.load(fh, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise AuxselError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    except FileNotFoundError as exc:
        raise AuxselError(f"{path}: no such params file") from exc


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as one line: what is wrong and where (1-based line:column)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}" + (f" ({context})" if context else "") + "; fix the file and rerun"


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = _key(error.absolute_path)
        hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return f"{where + '.' if error.absolute_path else ''}{extra[0]}: unknown key{hint}"
    if error.validator == "maxProperties" and error.validator_value == 0:
        return f"{_key(error.absolute_path)}: {error.schema.get('description', 'must be empty')}; remove it"
    if error.validator == "required":
        return f"{_key(error.absolute_path)}: {error.message}"
    return f"{_key(error.absolute_path)}: {error.message}"


def validate(params: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A validated copy of `params` with schema defaults filled in; raises naming the key."""
    if not isinstance(params, dict):
        raise AuxselError("params: the file must hold a mapping of keys")
    params = copy.deepcopy(params)
    _check_finite(params, [])
    errors = sorted(_Validator(schema).iter_errors(params), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        raise AuxselError(f"params: {_describe(errors[0])}")
    check(params)
    return params


def _check_finite(node: Any, path: list[Any]) -> None:
    """YAML's .nan and .inf pass every JSON-Schema bound (comparisons with NaN are false)."""
    if isinstance(node, float) and not math.isfinite(node):
        raise AuxselError(f"params: {_key(path)}: {node} is not a finite number")
    if isinstance(node, dict):
        for k, v in node.items():
            _check_finite(v, [*path, k])
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_finite(v, [*path, i])


def local_files(spec: dict[str, Any]) -> list[str]:
    """The local files a task reads (source `files`: its data_files, as given); none otherwise.
    What the runners declare as the prepare job's inputs."""
    if spec.get("source") != "files":
        return []
    data_files = spec.get("data_files")
    if isinstance(data_files, dict):
        return [str(v) for v in data_files.values()]
    return [str(data_files)] if isinstance(data_files, (str, Path)) else [str(f) for f in data_files or []]


def required_archives(params: dict[str, Any]) -> set[str]:
    needed = {ARCHIVE_OF[t["dataset"]] for t in params["tasks"].values() if t["source"] == "builtin" and t.get("dataset") in ARCHIVE_OF}
    model = params.get("model", {})
    if model.get("kind") == "hf" and model.get("name_or_path", "").startswith("builtin:"):
        needed.add(model["name_or_path"].split(":", 1)[1])
    return needed


def check(params: dict[str, Any]) -> None:
    """Cross-key rules that JSON-Schema cannot express."""
    tasks = params["tasks"]
    if params["target"] not in tasks:
        raise AuxselError(f"params: target: task {params['target']!r} is not defined under tasks")
    for name in params["candidates"]:
        if name not in tasks:
            raise AuxselError(f"params: candidates: task {name!r} is not defined under tasks")
    if params["target"] in params["candidates"]:
        raise AuxselError(f"params: candidates: the target {params['target']!r} cannot be its own candidate")
    for name, spec in tasks.items():
        where = f"params: tasks.{name}"
        if spec["source"] == "builtin":
            if spec.get("dataset") not in ARCHIVE_OF:
                raise AuxselError(f"{where}.dataset: builtin dataset must be one of {', '.join(sorted(ARCHIVE_OF))}")
        elif spec["source"] == "files" and "data_files" not in spec:
            raise AuxselError(f"{where}.data_files: required for source 'files'")
        elif spec["source"] == "hf" and "dataset" not in spec:
            raise AuxselError(f"{where}.dataset: required for source 'hf' (the hub path)")
        if "label_names" in spec and len(spec["label_names"]) != spec["num_classes"]:
            raise AuxselError(f"{where}.label_names: {len(spec['label_names'])} names for num_classes={spec['num_classes']}")
        if spec["dev_fraction"] + spec["test_fraction"] >= 1:
            raise AuxselError(f"{where}.dev_fraction: dev_fraction + test_fraction must be below 1")
        _check_options(where + ".options", spec.get("options", {}))
    _check_encoder(params.get("model", {}))
    missing = required_archives(params) - set(params["fetch"]["archives"])
    if missing:
        raise AuxselError(f"params: fetch.archives: missing {', '.join(sorted(missing))} needed by the tasks or encoder")


# a Hugging Face hub id: `name` or `owner/name` (letters, digits, -, _, .), optionally @revision
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?(@[\w./-]+)?$")


def _check_encoder(model: dict[str, Any]) -> None:
    """A text encoder is a fetched archive (`builtin:`), an existing local folder, or a hub id;
    a path that does not exist is named here, not by the hub client's 'Repo id must be ...'."""
    name = model.get("name_or_path", "")
    if model.get("kind") != "hf" or name.startswith("builtin:"):
        return
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise AuxselError(f"params: model.name_or_path: {name!r} is a file; give the folder that holds config.json and the weights")
        return
    if name.startswith((".", "/", "~")) or name.endswith("/") or not _HUB_ID.match(name):
        raise AuxselError(f"params: model.name_or_path: {name!r} is not an existing folder nor a hub id (owner/name); "
                          "give a local model folder, builtin:minilm, or a hub id")


def _check_options(where: str, options: dict[str, Any]) -> None:
    """What the options' schemas cannot say: an image range inside MNIST's 70,000 images, the
    kept parts below their count."""
    if "images" in options:
        lo, _, hi = options["images"].partition(":")
        start, stop = int(lo or 0), int(hi or MNIST_IMAGES)
        if not 0 <= start < stop <= MNIST_IMAGES:
            raise AuxselError(f"{where}.images: {options['images']!r} must be start:stop with 0 <= start < stop <= {MNIST_IMAGES}")
    count = options.get("partition_count", 1)
    bad = [p for p in options.get("partitions", []) if p >= count]
    if bad:
        raise AuxselError(f"{where}.partitions: {bad} not below partition_count {count}")


def load(path: Path, schema_path: Path) -> dict[str, Any]:
    """Read, validate and default-fill a params file."""
    return validate(read_yaml(path), read_yaml(schema_path))
