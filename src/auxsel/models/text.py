"""A Hugging Face encoder (default: the packaged all-MiniLM-L6-v2), mean-pooled, with an optional
shared MLP on top.

With `freeze_layers = k > 0` the encoder splits into a frozen bottom (embeddings + the lowest k
layers, always run in eval mode, without gradients) and a trainable top (the remaining layers,
mean pooling, the MLP). The bottom's output depends only on the example, so it can be computed
once and cached (`auxsel.features`); the encoder then accepts three kinds of batch, all giving
the same numbers:

    {"input_ids", "attention_mask"}  raw tokens: bottom + top (the live path)
    {"hidden", "attention_mask"}     the bottom's output, cached: top only
    {"pooled"}                       k = depth: the pooled sentence embedding, cached: the MLP only
"""

from __future__ import annotations

import torch
from torch import nn

from auxsel.errors import AuxselError

# encoders whose layers are called as layer(hidden, extended_mask) after `embeddings(input_ids)`;
# the split bottom/top path (and so the feature cache) is offered for these
SPLITTABLE = ("bert", "roberta", "xlm-roberta", "camembert", "electra")


def _layers(backbone: nn.Module) -> nn.ModuleList | None:
    for path in ("encoder.layer", "layers", "transformer.layer", "encoder.layers", "layer"):
        obj: object = backbone
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    return None


def _trim_padding(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the trailing columns that are padding in every row of the batch.

    Prepared files pad every example to `max_length`; short snippets would otherwise pay for the
    full length (attention is quadratic in it). Masked positions never reach an unmasked output,
    so the pooled embedding is unchanged (to float rounding); left-padded batches are left as they are.
    Works on [B, L] token ids and on [B, L, H] cached hidden states alike.
    """
    used = mask.any(dim=0).nonzero()
    keep = int(used.max()) + 1 if used.numel() else 1
    if keep == mask.shape[1]:
        return ids, mask
    return ids[:, :keep], mask[:, :keep]


def _packable(layer: nn.Module) -> bool:
    """A BERT-style layer (BERT, RoBERTa, ELECTRA, ...): self-attention with query/key/value,
    an output block (dense, dropout, LayerNorm) after it and after the feed-forward."""
    sa = getattr(getattr(layer, "attention", None), "self", None)
    parts = [getattr(sa, n, None) for n in ("query", "key", "value", "dropout")]
    blocks = [getattr(getattr(layer, "attention", None), "output", None), getattr(layer, "output", None)]
    return (sa is not None and all(isinstance(m, nn.Module) for m in parts) and hasattr(sa, "scaling")
            and hasattr(sa, "attention_head_size") and hasattr(sa, "num_attention_heads") and isinstance(getattr(layer, "intermediate", None), nn.Module)
            and all(all(isinstance(getattr(b, n, None), nn.Module) for n in ("dense", "dropout", "LayerNorm")) for b in blocks)
            and not getattr(layer, "is_decoder", False) and getattr(layer, "chunk_size_feed_forward", 0) == 0)


def _dropout_packed(x: torch.Tensor, p: float, training: bool, rows: int, idx: torch.Tensor) -> torch.Tensor:
    """F.dropout of the padded [rows, H] tensor, kept at the real tokens `idx`: the mask is drawn
    for every position, as the padded layer draws it, so a packed step consumes the random
    stream exactly as the padded one and a training run does not change its trajectory."""
    if not training or p == 0.0:
        return x
    noise = x.new_empty(rows, x.shape[1]).bernoulli_(1 - p).div_(1 - p)
    return x * noise.index_select(0, idx)


def _output_block(block: nn.Module, x: torch.Tensor, residual: torch.Tensor, rows: int, idx: torch.Tensor) -> torch.Tensor:
    h = _dropout_packed(block.dense(x), block.dropout.p, block.training, rows, idx)
    return block.LayerNorm(h + residual)


def packed_layers(layers, hidden: torch.Tensor, mask: torch.Tensor, ext_mask) -> torch.Tensor:
    """BERT-style layers on the real tokens only; [B, L, H] + [B, L] mask -> pooled [B, H].

    Every projection and the feed-forward act on each token alone, so they run on the T real
    tokens ([T, H]) instead of all B·L positions; only attention needs the [B, heads, L, L]
    layout, and gets it by scattering q, k, v back (padding rows zero, masked as keys). At 32
    tokens about a quarter of the text pool's positions are padding (bench/README.md §6): the
    top layers' step costs ~1.3x less, with the same function of the weights (to float rounding;
    dropout masks drawn as the padded layers draw them) as running the layers as they are."""
    B, L, H = hidden.shape
    rows = B * L
    idx = mask.reshape(-1).nonzero().squeeze(1)
    x = hidden.reshape(rows, H).index_select(0, idx)
    for layer in layers:
        sa = layer.attention.self
        heads, size = sa.num_attention_heads, sa.attention_head_size

        def spread(t: torch.Tensor) -> torch.Tensor:
            full = t.new_zeros(rows, t.shape[1]).index_copy(0, idx, t)
            return full.view(B, L, heads, size).transpose(1, 2)

        att = torch.nn.functional.scaled_dot_product_attention(
            spread(sa.query(x)), spread(sa.key(x)), spread(sa.value(x)), attn_mask=ext_mask,
            dropout_p=sa.dropout.p if sa.training else 0.0, scale=sa.scaling)
        att = att.transpose(1, 2).reshape(rows, heads * size).index_select(0, idx)
        a = _output_block(layer.attention.output, att, x, rows, idx)
        x = _output_block(layer.output, layer.intermediate(a), a, rows, idx)
    lengths = mask.sum(1, keepdim=True).clamp_min(1).to(x.dtype)
    return torch.zeros(B, H, dtype=x.dtype, device=x.device).index_add_(0, idx // L, x) / lengths


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def mlp(width_in: int, width: int, depth: int) -> nn.Sequential:
    """`depth` x (Linear -> ReLU); the shared trainable trunk over a frozen encoder's embeddings."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(width_in if i == 0 else width, width), nn.ReLU()]
    return nn.Sequential(*layers)


def one_line(exc: BaseException) -> str:
    """The first line of a Hugging Face error (they run to many lines of advice)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class TextEncoder(nn.Module):
    """`AutoModel.from_pretrained(name_or_path)` + attention-masked mean pooling (+ an MLP).

    Args:
        name_or_path: a local model folder or a hub name.
        freeze_layers: freeze the embeddings and the lowest `freeze_layers` transformer layers
            (0: train everything). Frozen modules stay in eval mode (no dropout), so their output
            is a function of the input alone and the cached and live paths agree.
        pretrained: False builds the architecture from the folder's config only (used when loading
            a saved auxsel model, whose weights come from its own safetensors file).
        mlp_layers, mlp_width: a shared MLP (Linear+ReLU) x mlp_layers over the pooled embedding;
            required when every layer is frozen (something shared must train).

    Output: [B, mlp_width] with an MLP, else [B, hidden_size].
    """

    def __init__(self, name_or_path: str, freeze_layers: int = 0, pretrained: bool = True,
                 mlp_layers: int = 0, mlp_width: int = 256) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        try:
            if pretrained:
                self.backbone = AutoModel.from_pretrained(name_or_path)
            else:
                self.backbone = AutoModel.from_config(AutoConfig.from_pretrained(name_or_path))
        except (OSError, ValueError) as exc:
            raise AuxselError(f"model.name_or_path: cannot load text encoder {name_or_path!r}: {one_line(exc)}") from exc
        pooler = getattr(self.backbone, "pooler", None)
        for p in pooler.parameters() if pooler is not None else []:
            p.requires_grad_(False)  # unused (we mean-pool): no gradient, nothing for αVIL/DIW to carry
        self.name_or_path = name_or_path
        self.freeze_layers = int(freeze_layers)
        self.packed = True  # top layers on real tokens only (packed_layers); False: the layers as they are
        hidden = int(self.backbone.config.hidden_size)
        self.depth = len(self.layers) if self.layers is not None else 0
        if freeze_layers:
            if self.layers is None:
                raise AuxselError(f"{name_or_path!r}: cannot find the transformer layers to freeze")
            if freeze_layers > self.depth:
                raise AuxselError(f"model.freeze_layers={freeze_layers} but {name_or_path!r} has {self.depth} layers")
            for module in self.frozen_modules():
                for p in module.parameters():
                    p.requires_grad_(False)
        if self.fully_frozen and mlp_layers < 1:
            raise AuxselError(f"model.freeze_layers={freeze_layers} freezes every layer of {name_or_path!r}: "
                              "set model.mlp_layers >= 1 so a shared trunk trains")
        self.mlp = mlp(hidden, int(mlp_width), int(mlp_layers)) if mlp_layers else nn.Identity()
        self.out_dim = int(mlp_width) if mlp_layers else hidden
        self.train()

    # -- the split
    @property
    def layers(self) -> nn.ModuleList | None:
        """The backbone's transformer layers (looked up, not registered twice)."""
        return _layers(self.backbone)

    @property
    def fully_frozen(self) -> bool:
        return self.freeze_layers > 0 and self.freeze_layers == self.depth

    @property
    def splittable(self) -> bool:
        """Whether the bottom/top split (and so the feature cache) is available for this encoder."""
        return getattr(self.backbone.config, "model_type", "") in SPLITTABLE and self.layers is not None

    def frozen_modules(self) -> list[nn.Module]:
        if not self.freeze_layers:
            return []
        emb = getattr(self.backbone, "embeddings", None)
        return ([emb] if emb is not None else []) + list(self.layers[: self.freeze_layers])

    def train(self, mode: bool = True) -> "TextEncoder":
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()  # frozen = a fixed function of the input: no dropout, in either mode
        return self

    def _mask(self, hidden: torch.Tensor, mask: torch.Tensor):
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=self.backbone.config, inputs_embeds=hidden, attention_mask=mask)

    def _run_layers(self, hidden: torch.Tensor, mask: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        ext = self._mask(hidden, mask)
        for layer in self.layers[lo:hi]:
            out = layer(hidden, ext)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    @torch.no_grad()
    def bottom(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The frozen part: embeddings + the lowest `freeze_layers` layers -> [B, L, H]; with every
        layer frozen, the pooled embedding [B, H]. What the feature cache stores."""
        if not (self.freeze_layers and self.splittable):
            raise AuxselError(f"{self.name_or_path!r}: no frozen bottom to compute (freeze_layers="
                              f"{self.freeze_layers}, model type {getattr(self.backbone.config, 'model_type', '?')!r})")
        hidden = self.backbone.embeddings(input_ids=ids)
        hidden = self._run_layers(hidden, mask, 0, self.freeze_layers)
        return mean_pool(hidden, mask) if self.fully_frozen else hidden

    def top(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The trainable part on the bottom's [B, L, H] output: the remaining layers, pooling, MLP."""
        hidden, mask = _trim_padding(hidden, mask)
        top = self.layers[self.freeze_layers:]
        if self.packed and len(top) and all(_packable(layer) for layer in top):
            return self.mlp(packed_layers(top, hidden, mask, self._mask(hidden, mask)))
        hidden = self._run_layers(hidden, mask, self.freeze_layers, self.depth)
        return self.mlp(mean_pool(hidden, mask))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "pooled" in batch:
            return self.mlp(batch["pooled"])
        if "hidden" in batch:
            return self.top(batch["hidden"], batch["attention_mask"])
        ids, mask = _trim_padding(batch["input_ids"], batch["attention_mask"])
        if self.freeze_layers and self.splittable:
            low = self.bottom(ids, mask)
            return self.mlp(low) if self.fully_frozen else self.top(low, mask)
        hidden = self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        return self.mlp(mean_pool(hidden, mask))
