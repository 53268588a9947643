"""Weight initialization of the Transformer parts: MAE's recipe (every part's default) and BEiT's."""
from __future__ import annotations

from typing import Callable

import torch
from timm.layers import trunc_normal_
from torch import nn


def init_vit_weights(module: nn.Module) -> None:
    """Xavier-uniform linears (patch projection treated as a linear layer), unit LayerNorms, N(0, 0.02) tokens.

    Applied once at construction; parameters named ``*_token`` are the learnable cls/[M] embeddings.
    """
    # The patch projection is a linear map of a flattened patch: init it like one (a no-op view for linears).
    _init_parts(module, draw_token=lambda t: nn.init.normal_(t, std=0.02),
                draw_weight=lambda w: nn.init.xavier_uniform_(w.view(w.shape[0], -1)))


def init_beit_weights(module: nn.Module, std: float = 0.02) -> None:
    """BEiT's draw: linears, the patch projection and the ``*_token`` parameters from a normal of std ``std``
    cut at ±``std`` (not ±2, torch's default: BEiT's own ``trunc_normal_`` passes ``a=-std, b=std``, which leaves
    an actual std of 0.54 ``std``), zero biases, unit LayerNorms. The sampler is timm's, the one BEiT calls.

    BEiT then divides each block's residual output projections by sqrt(2 * layer); that needs the blocks, so
    the encoder does it (timm's ``VisionTransformer.fix_init_weight``).
    """
    def draw(tensor: torch.Tensor) -> None:
        trunc_normal_(tensor, std=std, a=-std, b=std)
    _init_parts(module, draw_token=draw, draw_weight=draw)


def _init_parts(module: nn.Module, draw_token: Callable[[torch.Tensor], object],
                draw_weight: Callable[[torch.Tensor], object]) -> None:
    """The walk both recipes share, in the order every stored run drew: ``module``'s own ``*_token``
    parameters, then each linear and conv weight (its bias zeroed) and LayerNorm (1 and 0) in module order."""
    for name, param in module.named_parameters(recurse=False):
        if name.endswith('_token'):
            draw_token(param)
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Conv2d)):
            draw_weight(sub.weight)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
