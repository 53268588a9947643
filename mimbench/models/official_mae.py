"""Load checkpoints of the official MAE code (facebookresearch/mae, ``models_mae.py``) into mimbench's MAE.

Two differences separate their layout from ours, and both are undone here, exactly:

* **Names.** Their encoder already uses timm's names (``patch_embed.proj``, ``cls_token``, ``blocks.i``,
  ``norm``); the decoder's parts are top-level (``decoder_embed``, ``mask_token``, ``decoder_blocks.i``,
  ``decoder_norm``, ``decoder_pred``) where ours live under ``decoder.`` (``embed``, ``mask_token``,
  ``blocks.i``, ``norm``, ``head``).
* **The sin-cos channel order.** Their fixed position code puts the column's sin-cos on the first half of the
  channels and the row's on the second (``util/pos_embed.py``: ``meshgrid(grid_w, grid_h)``); ours puts the row
  first. Loading their weights next to our positions would give every patch another position. Instead the
  residual stream is re-indexed: every weight that writes into the stream (patch projection, cls token, each
  block's ``attn.proj`` and ``mlp.fc2``, LayerNorm scales, layer scales) has its output channels permuted, and
  every weight that reads from it (``attn.qkv``, ``mlp.fc1``, the decoder's input projection and head) its
  input channels. LayerNorm and attention do not care about the order of channels, so the converted model
  computes the same function with our own positions, and is indistinguishable from one trained here.

Their position buffers are checked against ours (after the permutation) rather than loaded: a checkpoint with
other positions (interpolated, learned) is refused with the largest difference named.
"""
from __future__ import annotations

import re

import torch

from mimbench.errors import MimbenchError
from mimbench.models.patches import sincos_pos_embed_2d

# Where each official key goes (first match wins). Decoder keys before the encoder's 'norm' and 'blocks'.
_RENAMES = (
    (r'^decoder_embed\.', 'decoder.embed.'),
    (r'^mask_token$', 'decoder.mask_token'),
    (r'^decoder_pos_embed$', 'decoder.pos_embed'),
    (r'^decoder_blocks\.', 'decoder.blocks.'),
    (r'^decoder_norm\.', 'decoder.norm.'),
    (r'^decoder_pred\.', 'decoder.head.'),
    (r'^(cls_token|pos_embed)$', r'encoder.\1'),
    (r'^(patch_embed|blocks|norm)\.', r'encoder.\1.'),
)
# Within a stream (encoder or decoder): weights whose output rows are channels of the stream, and weights
# whose input columns are. Everything else in a block (qkv and fc1 biases) is indexed by heads or hidden units.
_WRITES = re.compile(r'(^|\.)(cls_token|mask_token|patch_embed\.proj\.(weight|bias)|norm\d?\.(weight|bias)'
                     r'|attn\.proj\.(weight|bias)|mlp\.fc2\.(weight|bias)|ls\d\.gamma)$')
_READS = re.compile(r'(^|\.)(attn\.qkv\.weight|mlp\.fc1\.weight)$')
# The largest difference between their sin-cos positions and ours (both are float32 roundings of the same
# float64 values) that still counts as the same code.
_POS_TOLERANCE = 1e-5


class OfficialCheckpointError(MimbenchError, ValueError):
    """A state dict that is not an official MAE checkpoint we can convert."""


def half_swap(dim: int) -> torch.Tensor:
    """The channel permutation between their sin-cos layout and ours: the two halves swapped (an involution)."""
    return torch.cat([torch.arange(dim // 2, dim), torch.arange(0, dim // 2)])


def official_state_dict(checkpoint: dict) -> dict:
    """The model weights of an official checkpoint: the released files keep them under ``'model'``."""
    state = checkpoint.get('model', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or 'patch_embed.proj.weight' not in state:
        raise OfficialCheckpointError('not an official MAE checkpoint: no patch_embed.proj.weight at the top '
                                      'level or under "model"')
    return state


def _rename(key: str) -> str:
    for pattern, repl in _RENAMES:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key)
    raise OfficialCheckpointError(f'unexpected key {key!r} in the official MAE checkpoint (a fine-tuned '
                                  f'model\'s head or fc_norm? only pretraining checkpoints convert)')


def _check_positions(theirs: torch.Tensor, dim: int, grid: tuple[int, int], name: str) -> None:
    ours = sincos_pos_embed_2d(dim, grid, cls_token=True)[None]
    if theirs.shape != ours.shape:
        raise OfficialCheckpointError(f'{name}: shape {list(theirs.shape)}, expected {list(ours.shape)} for a '
                                      f'{grid[0]}x{grid[1]} grid')
    diff = (theirs.float()[..., half_swap(dim)] - ours).abs().max().item()
    if diff > _POS_TOLERANCE:
        raise OfficialCheckpointError(f'{name} is not the fixed 2-D sin-cos code (max difference {diff:.2e} '
                                      f'after the channel swap): positions were changed, cannot convert')


def from_official_mae(state: dict) -> dict:
    """Official MAE weights -> the state dict of mimbench's ``MAE`` (``encoder.*``, and ``decoder.*`` where the
    checkpoint has a decoder: the released ``mae_pretrain_*`` files hold the encoder only).

    Load the result with ``model.load_state_dict(out, strict=False)`` into a model whose config has the
    same widths, depths and patch size; ``strict=True`` works for a full checkpoint. The position buffers in
    the result are ours (checked to be the same code, re-ordered).
    """
    state = official_state_dict(state)
    dim = state['patch_embed.proj.weight'].shape[0]
    patches = state['pos_embed'].shape[1] - 1 if 'pos_embed' in state else None
    if patches is None or round(patches ** 0.5) ** 2 != patches:
        raise OfficialCheckpointError('the checkpoint has no square pos_embed [1, 1 + L, D] to read the grid from')
    grid = (round(patches ** 0.5),) * 2
    perms = {'encoder': half_swap(dim)}
    if 'decoder_embed.weight' in state:
        perms['decoder'] = half_swap(state['decoder_embed.weight'].shape[0])

    out = {}
    for key, value in state.items():
        new = _rename(key)
        stream, rest = new.split('.', 1)
        if stream not in perms:
            raise OfficialCheckpointError(f'{key} is a decoder weight, but the checkpoint has no decoder_embed')
        perm = perms[stream]
        value = value.detach().clone()
        if rest == 'pos_embed':
            _check_positions(value, perm.numel(), grid, key)
            value = sincos_pos_embed_2d(perm.numel(), grid, cls_token=True)[None]
        elif stream == 'decoder' and rest.startswith('embed.'):      # encoder stream in, decoder stream out
            value = value[perm]
            if rest == 'embed.weight':
                value = value[:, perms['encoder']]
        elif stream == 'decoder' and rest == 'head.weight':          # decoder stream in
            value = value[:, perm]
        elif _WRITES.search(rest):
            value = value[..., perm] if value.ndim == 3 else value[perm]   # tokens are [1, 1, D]
        elif _READS.search(rest):
            value = value[:, perm]
        out[new] = value.contiguous()
    return out

