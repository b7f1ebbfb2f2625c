"""A Hugging Face encoder (default: the packaged all-MiniLM-L6-v2), mean-pooled."""

from __future__ import annotations

import torch
from torch import nn

from auxsel.errors import AuxselError


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
    """
    used = mask.any(dim=0).nonzero()
    keep = int(used.max()) + 1 if used.numel() else 1
    if keep == mask.shape[1]:
        return ids, mask
    return ids[:, :keep], mask[:, :keep]


class TextEncoder(nn.Module):
    """`AutoModel.from_pretrained(name_or_path)` + attention-masked mean pooling.

    Args:
        name_or_path: a local model folder or a hub name.
        freeze_layers: freeze the embeddings and the lowest `freeze_layers` transformer layers
            (0: train everything).
        pretrained: False builds the architecture from the folder's config only (used when loading
            a saved auxsel model, whose weights come from its own safetensors file).

    Input: {"input_ids": [B, L], "attention_mask": [B, L]}. Output: [B, hidden_size].
    """

    def __init__(self, name_or_path: str, freeze_layers: int = 0, pretrained: bool = True) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        try:
            if pretrained:
                self.backbone = AutoModel.from_pretrained(name_or_path)
            else:
                self.backbone = AutoModel.from_config(AutoConfig.from_pretrained(name_or_path))
        except (OSError, ValueError) as exc:
            raise AuxselError(f"cannot load text encoder {name_or_path!r}: {exc}") from exc
        self.out_dim = int(self.backbone.config.hidden_size)
        if freeze_layers:
            layers = _layers(self.backbone)
            if layers is None:
                raise AuxselError(f"{name_or_path!r}: cannot find the transformer layers to freeze")
            if freeze_layers > len(layers):
                raise AuxselError(f"freeze_layers={freeze_layers} but {name_or_path!r} has {len(layers)} layers")
            emb = getattr(self.backbone, "embeddings", None)
            for module in ([emb] if emb is not None else []) + list(layers[:freeze_layers]):
                for p in module.parameters():
                    p.requires_grad_(False)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, mask = _trim_padding(batch["input_ids"], batch["attention_mask"])
        hidden = self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
