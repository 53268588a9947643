"""Vision Transformer encoder: timm's ``VisionTransformer`` with the two extra input paths MIM needs."""
from __future__ import annotations

from functools import partial

import torch
from timm.layers import DropPath
from timm.models.beit import RelativePositionBias
from timm.models.vision_transformer import LayerScale, VisionTransformer
from torch import nn
from torch.utils.checkpoint import checkpoint

from mimbench.engine.precision import forward_modes_again
from mimbench.masking.indices import gather_tokens
from mimbench.models.init import init_beit_weights, init_vit_weights
from mimbench.models.patches import sincos_pos_embed_2d
from mimbench.registry import ENCODERS

# name: (embed_dim, depth, num_heads). 'micro' is the CIFAR-scale encoder of the micro protocol (32 px, patch 4).
ARCHS = {
    'micro': (192, 6, 3),
    'tiny': (192, 12, 3),
    'small': (384, 12, 6),
    'base': (768, 12, 12),
    'large': (1024, 24, 16),
    'huge': (1280, 32, 16),
}


@ENCODERS.register_module()
class ViT(VisionTransformer):
    """ViT encoder: a timm ``VisionTransformer`` (no head), fixed 2-D sin-cos positions, MAE's init by default.

    Being timm's class, it has timm's parameter names (``patch_embed.proj``, ``cls_token``,
    ``pos_embed [1, 1 + L, D]``, ``blocks.i``, ``norm``), ``group_matcher`` (layer-wise lr decay through
    ``timm.optim.param_groups_layer_decay``), ``set_grad_checkpointing``, ``forward_features`` and
    ``forward_intermediates``, and its weights load into ``timm.create_model(name, **encoder.timm_kwargs)``
    (with ``rel_pos_bias`` they do not, and ``forward_intermediates`` is refused: timm's class has no such bias).

    Three forward paths, all returning ``[B, 1 + N, D]`` with the cls token first:
      * :meth:`forward_visible` ``(imgs, ids_keep)``: only the patches at ``ids_keep [B, N]`` enter the
        Transformer (MAE/CAE encoder; where the compute saving comes from).
      * :meth:`forward_masked` ``(imgs, mask)``: all L patches, masked ones replaced by a learnable [M]
        embedding before the position embedding is added (BEiT-style; MAE's "encoder w/ [M]" ablation).
        Needs ``use_mask_token=True``.
      * :meth:`forward` ``(imgs)``: all patches, nothing masked (evaluation). Unlike timm's ``forward`` it
        returns the tokens (timm's ``forward_features``), not a pooled head output: pooling is the probe's.

    The positions are a buffer, not a parameter (fixed, as in MAE); its [cls] row is zero. With
    ``rel_pos_bias=True`` they are BEiT's instead: no absolute positions (the buffer is zero) and one learned
    relative position bias ``[H, 1 + L, 1 + L]`` (timm's ``RelativePositionBias``, zero at init, [cls] rows and
    columns of their own) added to the attention logits of every block, as BEiT v1 pretrains with its default
    ``--rel_pos_bias``. A subset of patches (``forward_visible``) reads the bias of its own positions.

    Args:
        arch: one of :data:`ARCHS`; ``embed_dim``/``depth``/``num_heads`` override its values.
        img_size, patch_size, in_chans: input geometry; the grid is ``img_size // patch_size`` per side.
        drop_path_rate: stochastic depth, linearly increasing over the blocks.
        layer_scale_init: initial value of timm's LayerScale (None: no layer scale).
        rel_pos_bias: BEiT's shared relative position bias in place of the sin-cos positions.
        weight_init: ``'mae'`` (every algorithm's default: Xavier-uniform linears, N(0, 0.02) tokens) or
            ``'beit'`` (BEiT's: normals of std 0.02 cut at ±0.02 for linears, patch projection and tokens, then
            each block's ``attn.proj`` and ``mlp.fc2`` divided by sqrt(2 * layer), layers counted from 1).
    """

    WEIGHT_INITS = ('mae', 'beit')

    def __init__(self, arch: str = 'base', img_size: int = 224, patch_size: int = 16, in_chans: int = 3,
                 embed_dim: int | None = None, depth: int | None = None, num_heads: int | None = None,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path_rate: float = 0.0,
                 layer_scale_init: float | None = None, use_mask_token: bool = False, rel_pos_bias: bool = False,
                 weight_init: str = 'mae'):
        if arch not in ARCHS:
            raise ValueError(f"unknown ViT arch '{arch}'; choose one of {', '.join(ARCHS)}")
        if weight_init not in self.WEIGHT_INITS:
            raise ValueError(f"unknown ViT weight_init '{weight_init}'; choose one of {', '.join(self.WEIGHT_INITS)}")
        if img_size % patch_size:
            raise ValueError(f'img_size {img_size} is not a multiple of patch_size {patch_size}')
        default_dim, default_depth, default_heads = ARCHS[arch]
        embed_dim, depth, num_heads = embed_dim or default_dim, depth or default_depth, num_heads or default_heads
        if embed_dim % num_heads:
            raise ValueError(f'embed_dim {embed_dim} is not divisible by num_heads {num_heads}')
        timm_kwargs = dict(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                           depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                           init_values=layer_scale_init)
        # No head, [cls] pooling for timm's forward_head; positions are ours (below); timm's init is skipped
        # for ours (_draw_weights): MAE's draws from the same random stream as before this class was timm's.
        super().__init__(**timm_kwargs, num_classes=0, global_pool='token', drop_path_rate=drop_path_rate,
                         pos_embed='none', norm_layer=partial(nn.LayerNorm, eps=1e-6), weight_init='skip')
        # The architecture as timm.create_model takes it (training choices such as drop path left out).
        self.timm_kwargs = dict(timm_kwargs, num_classes=0, global_pool='token')
        self.in_chans = in_chans
        self.patch_size = patch_size
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]

        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if use_mask_token else None
        # Built before the weights are drawn only where it is asked for: an encoder without it draws the same
        # random stream as every stored run.
        self.rel_pos_bias = RelativePositionBias(self.grid, num_heads) if rel_pos_bias else None
        del self.pos_embed      # timm's attribute is None with pos_embed='none'; ours is a fixed buffer
        self.register_buffer('pos_embed', self._positions())
        # Stochastic depth rates as Python floats (timm rounds them through a float32 linspace): the drop
        # decisions of every stored run stay the same.
        for i, block in enumerate(self.blocks):
            for drop in (block.drop_path1, block.drop_path2):
                if isinstance(drop, DropPath):
                    drop.drop_prob = drop_path_rate * i / max(depth - 1, 1)
        self.weight_init = weight_init
        self._draw_weights()
        # Initialized here, once: mmengine's runner calls init_weights() on every submodule that has one
        # unless it says is_init, and a second draw would give other weights than every stored run had.
        self.is_init = True

    def init_weights(self, mode: str = '', needs_reset: bool = True) -> None:
        """Draw the weights again with the encoder's own ``weight_init`` (timm's modes do not apply: the
        positions are a fixed code)."""
        self._draw_weights()
        self.pos_embed.copy_(self._positions())
        # The parts that are not drawn go back to their starting values: LayerScale's gamma, the bias table.
        for module in self.modules():
            if isinstance(module, (LayerScale, RelativePositionBias)):
                module.reset_parameters()

    def _draw_weights(self) -> None:
        """Draw every linear, the patch projection and the tokens by ``self.weight_init``."""
        if self.weight_init == 'beit':
            init_beit_weights(self)
            # BEiT's rescale, timm's copy of it: damps the residual updates of deep blocks at the start.
            self.fix_init_weight()
        else:
            init_vit_weights(self)

    def _positions(self) -> torch.Tensor:
        """The absolute positions ``[1, 1 + L, D]``: sin-cos, or zero where the relative bias replaces them."""
        pos = sincos_pos_embed_2d(self.embed_dim, self.grid, cls_token=True)[None]
        return pos.zero_() if self.rel_pos_bias is not None else pos

    def set_input_size(self, *args, **kwargs):
        raise NotImplementedError('the positions are fixed to the grid the ViT was built with: '
                                  'build a new ViT with the new img_size (its weights load, positions aside)')

    def _embed(self, imgs: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> patch embeddings with positions added, ``[B, L, D]``."""
        return self.patch_embed(imgs) + self.pos_embed[:, 1:]

    def attention_bias(self, ids_keep: torch.Tensor | None = None) -> torch.Tensor | None:
        """The relative position bias the blocks add to their attention logits: ``[1, H, 1 + L, 1 + L]`` for
        all patches, ``[B, H, 1 + N, 1 + N]`` for the patches at ``ids_keep [B, N]`` (with [cls] first); None
        without ``rel_pos_bias``."""
        if self.rel_pos_bias is None:
            return None
        if ids_keep is None:
            return self.rel_pos_bias()[None]
        tokens = torch.cat([ids_keep.new_zeros(ids_keep.shape[0], 1), ids_keep + 1], dim=1)     # [B, 1 + N]
        index = self.rel_pos_bias.relative_position_index[tokens[:, :, None], tokens[:, None, :]]
        return self.rel_pos_bias.relative_position_bias_table[index].permute(0, 3, 1, 2)      # [B, H, 1+N, 1+N]

    def _encode(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None,
                final_norm: bool = True) -> torch.Tensor:
        """Prepend cls, run the blocks, normalize: ``[B, N, D]`` -> ``[B, 1 + N, D]``; ``ids_keep [B, N]``
        says which patches ``x`` holds (None: all, in order), for the relative position bias."""
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        bias = self.attention_bias(ids_keep)
        checkpointed = self.grad_checkpointing and torch.is_grad_enabled()
        for block in self.blocks:
            x = (checkpoint(block, x, bias, use_reentrant=False, context_fn=forward_modes_again) if checkpointed
                 else block(x, attn_mask=bias))
        return self.norm(x) if final_norm else x

    def forward_visible(self, imgs: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """Encode only the patches at ``ids_keep [B, N]``: returns ``[B, 1 + N, D]``."""
        return self._encode(gather_tokens(self._embed(imgs), ids_keep), ids_keep)

    def forward_masked(self, imgs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encode all patches with [M] where ``mask [B, L]`` is True: returns ``[B, 1 + L, D]``."""
        if self.mask_token is None:
            raise RuntimeError('forward_masked needs an encoder built with use_mask_token=True')
        x = self.patch_embed(imgs)
        x = torch.where(mask.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        return self._encode(x + self.pos_embed[:, 1:])

    def forward(self, imgs: torch.Tensor, final_norm: bool = True) -> torch.Tensor:
        """Encode every patch (evaluation): ``[B, C, H, W]`` -> ``[B, 1 + L, D]``. ``final_norm=False`` returns
        the last block's output as it is, the tokens the authors' fine-tuning averages (MAE, BEiT and CAE drop
        the encoder's final norm there and normalize the average instead)."""
        return self._encode(self._embed(imgs), final_norm=final_norm)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """timm's name for :meth:`forward` (timm's own runs its blocks without the relative position bias)."""
        if self.rel_pos_bias is None:
            return super().forward_features(x)
        return self.forward(x)

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's grouping, the relative position bias in the top layer with the final norm (where BEiT's layer
        decay puts a shared bias)."""
        matcher = super().group_matcher(coarse)
        if self.rel_pos_bias is not None:
            matcher['blocks'] = [*matcher['blocks'], (r'^rel_pos_bias', (99999,))]
        return matcher

    def forward_intermediates(self, *args, **kwargs):
        if self.rel_pos_bias is not None:
            raise NotImplementedError("timm's forward_intermediates runs the blocks without the relative position "
                                      'bias; read the blocks with forward hooks instead')
        return super().forward_intermediates(*args, **kwargs)

    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay() | {'mask_token'}
