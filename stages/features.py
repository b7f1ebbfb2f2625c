"""Frozen encoder layers computed once: data/features/<task>/{train,dev,test}.safetensors + meta.json.

Every training job of the task reuses them (auxsel.features). With nothing frozen to cache
(vision, `model.freeze_layers: 0`, `model.cache_features: false`) it writes only meta.json
(mode "none") and training reads the prepared tokens.
"""

from __future__ import annotations

from auxsel import artifacts, features
from stages import _common

SPLITS = ("train", "dev", "test")


def main() -> None:
    args, params = _common.task_stage(__doc__)
    _common.set_threads(params["threads"])
    prepared = _common.PREPARED / args.task
    out = _common.FEATURES / args.task
    prov = artifacts.Provenance("features", {"model": params["model"], "device": params["device"]}, [prepared],
                                device=params["device"])
    encoder = _common.frozen_encoder(params)
    mode = features.mode_of(encoder)  # "none" when nothing is frozen (encoder None)
    key = _common.feature_key(params, args.task, mode)
    with artifacts.atomic_dir(out, command=_common.job_command()) as tmp:
        tensors = {}
        if mode != "none":
            from auxsel.tasks.load import load_task
            from auxsel.train import resolve_device

            _common.verify_prepared(prepared, SPLITS)
            task = load_task(prepared, SPLITS)
            device = resolve_device(params["device"])
            tensors = {s: features.compute(encoder, task, s, device=device) for s in SPLITS if task.size(s)}
        meta = features.write(tmp, tensors, key, args.task)
        prov.write(tmp, outputs={s: artifacts.file_sha256(tmp / f"{s}.safetensors") for s in tensors})
    size = f"{meta['bytes_on_disk'] / 2**20:.1f} MiB on disk, {meta['bytes_in_ram'] / 2**20:.1f} MiB in RAM"
    print(f"{args.task}: features mode {mode} ({size}) -> {out}")


if __name__ == "__main__":
    _common.run(main)
