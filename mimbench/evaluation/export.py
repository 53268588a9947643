"""Export a pretrained encoder as a timm ``VisionTransformer`` checkpoint.

Our ViT names its parameters as timm does (``patch_embed.proj``, ``cls_token``, ``pos_embed [1, 1 + L, D]``,
``blocks.i.*``, ``norm``) and uses timm's blocks, so export is a matter of choosing the keys and the matching
timm constructor arguments; the [M] token of a BEiT-style encoder has no timm counterpart and is dropped.
"""
from __future__ import annotations

from torch import nn

from mimbench.evaluation.encoder import PRETRAINING_ONLY

# timm entry points by width: each sets embed_dim and num_heads, and every other argument is passed explicitly.
_TIMM_NAMES = {192: 'vit_tiny_patch16_224', 384: 'vit_small_patch16_224', 768: 'vit_base_patch16_224',
               1024: 'vit_large_patch16_224', 1280: 'vit_huge_patch14_224'}


def timm_model_args(encoder: nn.Module) -> tuple[str, dict]:
    """A timm model name and keyword arguments that construct the same architecture as ``encoder``.

    Read off the built modules (not the config), so they describe exactly the weights being exported.
    ``num_classes=0`` leaves timm's head out; ``global_pool='token'`` pools the [cls] token as MAE's linear
    probe does.
    """
    block = encoder.blocks[0]
    dim = encoder.embed_dim
    ls = getattr(block, 'ls1', None)
    init_values = float(ls.gamma.detach().flatten()[0]) if hasattr(ls, 'gamma') else None
    kwargs = dict(
        img_size=encoder.grid[0] * encoder.patch_size,
        patch_size=encoder.patch_size,
        in_chans=encoder.in_chans,
        embed_dim=dim,
        depth=len(encoder.blocks),
        num_heads=block.attn.num_heads,
        mlp_ratio=block.mlp.fc1.out_features / dim,
        qkv_bias=block.attn.qkv.bias is not None,
        init_values=init_values,
        num_classes=0,
        global_pool='token',
    )
    return _TIMM_NAMES.get(dim, 'vit_base_patch16_224'), kwargs


def timm_state_dict(encoder: nn.Module) -> dict:
    """``encoder``'s weights under timm's names (contiguous CPU tensors), without the [M] token."""
    return {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()
            if k not in PRETRAINING_ONLY}


def export_payload(encoder: nn.Module, source: str | None = None) -> dict:
    """What ``tools/export.py`` saves: ``{'state_dict': ..., 'meta': {...}}``.

    timm's ``load_checkpoint`` (and so ``create_model(..., checkpoint_path=...)``) reads the ``state_dict``
    key and loads with ``weights_only=True``; ``meta`` holds only strings and numbers, which that allows, and
    records how to build the model.
    """
    name, kwargs = timm_model_args(encoder)
    return {'state_dict': timm_state_dict(encoder),
            'meta': {'timm_model': name, 'timm_kwargs': kwargs, 'source_checkpoint': source}}


def timm_create_call(name: str, kwargs: dict, path: str) -> str:
    """The ``timm.create_model(...)`` line that loads an export, for printing."""
    args = ', '.join(f'{k}={v!r}' for k, v in kwargs.items())
    return f"timm.create_model({name!r}, {args}, checkpoint_path={path!r})"
