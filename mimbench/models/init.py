"""Weight initialization of the Transformer parts: MAE's recipe (every part's default) and BEiT's."""
from __future__ import annotations

from timm.layers import trunc_normal_
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


def init_beit_weights(module: nn.Module, std: float = 0.02) -> None:
    """BEiT's draw: linears, the patch projection and the ``*_token`` parameters from a normal of std ``std``
    cut at ±``std`` (not ±2, torch's default: BEiT's own ``trunc_normal_`` passes ``a=-std, b=std``, which leaves
    an actual std of 0.54 ``std``), zero biases, unit LayerNorms. The sampler is timm's, the one BEiT calls.

    BEiT then divides each block's residual output projections by sqrt(2 * layer); that needs the blocks, so
    the encoder does it (timm's ``VisionTransformer.fix_init_weight``).
    """
    for name, param in module.named_parameters(recurse=False):
        if name.endswith('_token'):
            trunc_normal_(param, std=std, a=-std, b=std)
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Conv2d)):
            trunc_normal_(sub.weight, std=std, a=-std, b=std)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
