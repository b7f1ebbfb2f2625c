"""Models: LeNet trunk + heads, the HF text encoder, safetensors round trips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from auxsel.errors import AuxselError
from auxsel.models import build_model, load_model, save_model

from _auxsel_small import small_pool


def test_lenet_shapes_and_seeded_init():
    m = build_model({"kind": "lenet"}, {"left": 10, "parity": 2}, seed=3)
    x = {"image": torch.randint(0, 256, (5, 36, 36), dtype=torch.uint8)}
    assert m(x, "left").shape == (5, 10)
    assert m(x, "parity").shape == (5, 2)
    names = [n for n, _ in m.named_parameters()]
    assert names[0].startswith("trunk.") and names[-1].startswith("heads.parity")
    same = build_model({"kind": "lenet"}, {"left": 10, "parity": 2}, seed=3)
    other = build_model({"kind": "lenet"}, {"left": 10, "parity": 2}, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), same.state_dict().values()))
    assert not torch.equal(m.trunk.conv1.weight, other.trunk.conv1.weight)


def test_vision_save_load_identical_logits(tmp_path):
    pool = small_pool()
    m = build_model({"kind": "lenet", "hidden": 40}, {"left": 10, "right": 10}, seed=0)
    with torch.no_grad():  # move off the init so the test is not about defaults
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    x = pool["left"].inputs("dev", slice(0, 64))
    m.eval()
    path = tmp_path / "model.safetensors"
    save_model(m, path)
    back = load_model(path)
    back.eval()
    assert back.spec == m.spec and back.head_classes == m.head_classes
    for task in ("left", "right"):
        assert torch.equal(m(x, task), back(x, task))


def test_bad_specs_fail_with_a_message(tmp_path):
    with pytest.raises(AuxselError, match="unknown kind"):
        build_model({"kind": "vgg"}, {"a": 2})
    with pytest.raises(AuxselError, match="unknown key"):
        build_model({"kind": "lenet", "width": 3}, {"a": 2})
    with pytest.raises(AuxselError, match="cannot name a model head"):
        build_model({"kind": "lenet"}, {"a.b": 2})
    (tmp_path / "x.safetensors").write_bytes(b"junk")
    with pytest.raises(Exception):
        load_model(tmp_path / "x.safetensors")


def _minilm_dir() -> Path:
    d = os.environ.get("AUXSEL_MINILM_DIR")
    if not d or not (Path(d) / "config.json").is_file():
        pytest.fail("MiniLM folder not found: conftest fetches it and sets AUXSEL_MINILM_DIR")
    return Path(d)


def test_text_encoder_pooling_freezing_and_round_trip(tmp_path):
    from transformers import AutoTokenizer

    d = _minilm_dir()
    torch.manual_seed(0)
    spec = {"kind": "hf", "name_or_path": str(d), "freeze_layers": 2}
    m = build_model(spec, {"sentiment": 2, "topic": 5}, seed=0)
    frozen = {n for n, p in m.named_parameters() if not p.requires_grad}
    assert any(".embeddings." in n for n in frozen)
    assert any(".layer.1." in n for n in frozen) and not any(".layer.2." in n for n in frozen)
    assert all(p.requires_grad for p in m.heads.parameters())
    tok = AutoTokenizer.from_pretrained(str(d))
    texts = ["a gripping, beautifully acted film", "dull and far too long"]
    short = tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    long = tok(texts, padding="max_length", truncation=True, max_length=32, return_tensors="pt")
    m.eval()
    with torch.no_grad():
        a = m({"input_ids": short["input_ids"], "attention_mask": short["attention_mask"]}, "topic")
        b = m({"input_ids": long["input_ids"], "attention_mask": long["attention_mask"]}, "topic")
    assert a.shape == (2, 5)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)  # padding does not change the pooled output
    path = tmp_path / "text.safetensors"
    save_model(m, path)
    back = load_model(path)
    back.eval()
    x = {"input_ids": long["input_ids"], "attention_mask": long["attention_mask"]}
    with torch.no_grad():
        assert torch.equal(m(x, "sentiment"), back(x, "sentiment"))
        assert torch.equal(m(x, "topic"), back(x, "topic"))
    with pytest.raises(AuxselError, match="freeze_layers"):
        build_model({"kind": "hf", "name_or_path": str(d), "freeze_layers": 99}, {"a": 2})


def test_text_batches_drop_only_the_padding_every_row_shares():
    from auxsel.models.text import _trim_padding

    ids = torch.tensor([[101, 7, 8, 102, 0, 0], [101, 9, 102, 0, 0, 0]])
    mask = (ids != 0).long()
    short_ids, short_mask = _trim_padding(ids, mask)
    assert short_ids.tolist() == [[101, 7, 8, 102], [101, 9, 102, 0]]
    assert short_mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    left = torch.tensor([[0, 0, 101, 102], [0, 101, 5, 102]])
    assert _trim_padding(left, (left != 0).long())[0].shape == (2, 4)  # left padding: nothing trailing to drop
    empty = torch.zeros(2, 5, dtype=torch.long)
    assert _trim_padding(empty, empty)[1].shape == (2, 1)


def test_packed_top_layers_give_the_padded_layers_numbers_and_random_stream():
    """The trainable top runs on real tokens only; in eval and in training (dropout on), with one
    seed, outputs and gradients match running the HF layers on the padded batch, and the random
    stream is left where the padded run leaves it (training trajectories do not move)."""
    from transformers import AutoTokenizer

    from auxsel.models.text import _packable

    d = _minilm_dir()
    m = build_model({"kind": "hf", "name_or_path": str(d), "freeze_layers": 4}, {"s": 2}, seed=0)
    enc = m.trunk
    assert all(_packable(layer) for layer in enc.layers)
    tok = AutoTokenizer.from_pretrained(str(d))
    texts = ["a gripping, beautifully acted film that never lets go", "dull", "too long by half", "fine"]
    x = tok(texts, padding="max_length", truncation=True, max_length=16, return_tensors="pt")
    hidden = enc.bottom(x["input_ids"], x["attention_mask"])
    for training in (False, True):
        m.train(training)
        runs = []
        for packed in (False, True):
            enc.packed = packed
            m.zero_grad()
            torch.manual_seed(7)
            out = m({"hidden": hidden, "attention_mask": x["attention_mask"]}, "s")
            out.pow(2).sum().backward()
            grads = torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None])
            runs.append((out.detach(), grads, torch.rand(4)))
        (a, ga, ra), (b, gb, rb) = runs
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(gb, ga, atol=1e-5, rtol=1e-4)
        assert torch.equal(ra, rb), f"training={training}: the packed run drew a different number of random values"
    m.train(True)
    enc.packed = True
    torch.manual_seed(7)
    y1 = m({"hidden": hidden, "attention_mask": x["attention_mask"]}, "s")
    torch.manual_seed(8)
    y2 = m({"hidden": hidden, "attention_mask": x["attention_mask"]}, "s")
    assert not torch.allclose(y1, y2), "dropout is on in training: two seeds give two outputs"
