"""Weight initialization shared by the Transformer parts (the MAE recipe)."""
from __future__ import annotations

from torch import nn


def init_vit_weights(module: nn.Module) -> None:
    """Xavier-uniform linears (patch projection treated as a linear layer), unit LayerNorms, N(0, 0.02) tokens.

    Applied once at construction; parameters named ``*_token`` are the learnable cls/[M] embeddings.
    """
    for name, param in module.named_parameters(recurse=False):
        if name.endswith('_token'):
            nn.init.normal_(param, std=0.02)
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.xavier_uniform_(sub.weight)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Conv2d):
            # The patch projection is a linear map of a flattened patch: init it like one.
            nn.init.xavier_uniform_(sub.weight.view(sub.weight.shape[0], -1))
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
