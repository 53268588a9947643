"""Export a pretrained encoder as a timm ``VisionTransformer`` checkpoint.

Our ViT is timm's ``VisionTransformer`` (``mimbench.models.vit``), so export is its state dict and the
constructor arguments it was built with; the [M] token of a BEiT-style encoder has no timm counterpart and is
dropped, and the fixed sin-cos positions load into timm's (learnable) ``pos_embed`` of the same shape.
"""
from __future__ import annotations

from torch import nn

from mimbench.errors import MimbenchError
from mimbench.evaluation.encoder import PRETRAINING_ONLY

# timm entry points by width: each sets embed_dim and num_heads, and every other argument is passed explicitly.
_TIMM_NAMES = {192: 'vit_tiny_patch16_224', 384: 'vit_small_patch16_224', 768: 'vit_base_patch16_224',
               1024: 'vit_large_patch16_224', 1280: 'vit_huge_patch14_224'}


def timm_model_args(encoder: nn.Module) -> tuple[str, dict]:
    """A timm model name and keyword arguments that construct the same architecture as ``encoder``: the
    arguments our ``ViT`` passed to timm's ``VisionTransformer`` (``encoder.timm_kwargs``: no head,
    ``global_pool='token'`` pools the [cls] token as MAE's linear probe does)."""
    if getattr(encoder, 'rel_pos_bias', None) is not None:
        raise MimbenchError("export writes timm's VisionTransformer, which has no relative position bias: an "
                            'encoder pretrained with rel_pos_bias=True (BEiT) cannot be exported to it')
    kwargs = dict(encoder.timm_kwargs)
    return _TIMM_NAMES.get(kwargs['embed_dim'], 'vit_base_patch16_224'), kwargs


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
