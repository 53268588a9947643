"""CAE: encode the visible patches, regress the removed patches' latents, align them with a teacher, decode."""
from __future__ import annotations

import copy
import warnings
from numbers import Integral, Real

import torch
import torch.nn.functional as F

import mimbench.engine.momentum  # noqa: F401  (registers MomentumTeacherHook, which CAE configs list)
from mimbench.algorithms.base import BaseAlgorithm
from mimbench.masking.indices import split_indices
from mimbench.masking.scatter import scatter_tokens
from mimbench.registry import ENCODERS, HEADS, MASKERS, MODELS, TARGETS


@MODELS.register_module()
class CAE(BaseAlgorithm):
    """Context autoencoder (Chen et al. 2022) assembled from registered parts.

    Args:
        encoder: ViT config; its grid and width size the other parts. The teacher is a copy of it.
        regressor: ``CAERegressor`` config; grid and width are filled in.
        decoder: ``CAEDecoder`` config; grid, width and output width (the target's ``channels``) are filled in.
        masker: masker config; the grid is filled in. It must remove a fixed number of patches per image.
        target: target config (``TokenTarget`` as in the paper, ``PixelTarget``, ``PCATarget``).
        align_weight: lambda in ``loss = decoding + lambda * alignment``, >= 0 (paper: 2).
        momentum: teacher momentum m in [0, 1]: after every optimizer step
            ``teacher = m * teacher + (1 - m) * encoder`` (0, the authors' default, copies the encoder; 1 freezes
            the teacher). The step is driven by ``MomentumTeacherHook``, which the CAE configs list.
        teacher_train_mode: run the teacher in the model's mode, so in training its drop path (the encoder's
            ``drop_path_rate``, copied with it) is active and the alignment target is noisy, as in the authors'
            code, where the alignment encoder is a submodule that ``model.train()`` switches like the rest. Off
            (the default): the teacher always runs in eval mode and gives the deterministic encoding.

    ``loss(imgs [B, C, H, W])`` returns ``{'loss_decode': ..., 'loss_align': lambda * MSE}``; mmengine sums the
    two into ``loss`` and logs all three.
    ``reconstruct(imgs, mask)`` is the decoded prediction that ``loss_decode`` scores (for pictures).
    """

    # The decoder predicts the removed patches only (MAE's predicts every patch): pictures grey out the rest.
    reconstructs_visible = False

    def __init__(self, encoder: dict, regressor: dict, decoder: dict, masker: dict, target: dict,
                 align_weight: float = 2.0, momentum: float = 0.0, teacher_train_mode: bool = False,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None):
        super().__init__(data_preprocessor, init_cfg)
        if isinstance(align_weight, bool) or not isinstance(align_weight, Real) or not align_weight >= 0:
            raise ValueError(f'align_weight (lambda) must be a number >= 0, got {align_weight!r}')
        if isinstance(momentum, bool) or not isinstance(momentum, Real) or not 0 <= momentum <= 1:
            raise ValueError(f'momentum must be a number in [0, 1], got {momentum!r}')
        if not isinstance(teacher_train_mode, bool):
            raise ValueError(f'teacher_train_mode must be True or False, got {teacher_train_mode!r}')
        self.align_weight = float(align_weight)
        self.momentum = float(momentum)
        self.teacher_train_mode = teacher_train_mode

        self.encoder = ENCODERS.build(encoder)
        grid, width = self.encoder.grid, self.encoder.embed_dim
        self.masker = MASKERS.build(masker, default_args=dict(grid=grid))
        self.target = TARGETS.build(target, default_args=dict(patch_size=self.encoder.patch_size,
                                                              in_chans=self.encoder.in_chans))
        self.regressor = HEADS.build(regressor, default_args=dict(grid=grid, embed_dim=width))
        self.decoder = HEADS.build(decoder, default_args=dict(grid=grid, in_dim=width,
                                                              out_dim=self.target.channels))
        self._check_parts()

        # Same architecture and starting point as the encoder; it only ever changes by momentum_update().
        self.teacher = copy.deepcopy(self.encoder)
        self.teacher.requires_grad_(False)
        self.teacher.train(self.training and teacher_train_mode)
        self._forwards_since_update = 0
        self.teacher_updated_by_hook = False   # MomentumTeacherHook sets it; then the hook decides when to update

    def _check_parts(self) -> None:
        """Mismatches that would otherwise surface as shape errors deep inside the first step."""
        num_masked = getattr(self.masker, 'num_masked', None)
        if isinstance(num_masked, bool) or not isinstance(num_masked, Integral):
            raise ValueError(f'CAE needs a masker that removes a fixed number of patches per image (an int '
                             f'`num_masked`); {type(self.masker).__name__} has num_masked={num_masked!r}')
        expected = getattr(self.regressor, 'num_masked', None)
        if expected is not None and expected != num_masked:
            raise ValueError(f'regressor.num_masked={expected} but the masker removes {num_masked} of '
                             f'{self.masker.num_patches} patches per image ({self.masker!r}); make them agree '
                             f'or drop regressor.num_masked')
        if self.regressor.grid != self.encoder.grid or self.decoder.grid != self.encoder.grid:
            raise ValueError(f'regressor grid {self.regressor.grid} and decoder grid {self.decoder.grid} must '
                             f'equal the encoder grid {self.encoder.grid}; leave `grid` out of their configs')
        out_dim = self.decoder.head.out_features
        if out_dim != self.target.channels:
            raise ValueError(f'decoder out_dim={out_dim} does not match the target, which '
                             f'needs {self.target.channels} (e.g. the tokenizer vocabulary); leave out_dim out of '
                             f'the decoder config')

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.teacher_train_mode:
            self.teacher.eval()   # a noise-free regression target: no drop path in it
        return self

    @torch.no_grad()
    def momentum_update(self) -> None:
        """``teacher = m * teacher + (1 - m) * encoder`` for every parameter and buffer (called after each step)."""
        m = self.momentum
        for t, s in zip(self.teacher.parameters(), self.encoder.parameters()):
            t.mul_(m).add_(s.detach(), alpha=1.0 - m)
        for t, s in zip(self.teacher.buffers(), self.encoder.buffers()):
            t.copy_(s)
        self._forwards_since_update = 0

    @torch.no_grad()
    def teacher_latents(self, imgs: torch.Tensor, ids_masked: torch.Tensor) -> torch.Tensor:
        """The teacher's encoding of the real content of the removed patches: ``[B, Lm, D]``, no gradient."""
        return self.teacher.forward_visible(imgs, ids_masked)[:, 1:].detach()   # cls dropped

    def loss(self, imgs: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if mask is None:
            mask = self.masker(imgs.shape[0], device=imgs.device)               # [B, L], True = removed
        self._warn_if_teacher_is_stale()
        ids = split_indices(mask)
        latent = self.encoder.forward_visible(imgs, ids.ids_keep)                # [B, 1 + Lv, D]
        pred_latent = self.regressor(latent, ids.ids_keep, ids.ids_masked)       # [B, Lm, D]
        target_latent = self.teacher_latents(imgs, ids.ids_masked)               # [B, Lm, D]
        pred = self.decoder(pred_latent, ids.ids_masked)                         # [B, Lm, C_t]
        loss_align = F.mse_loss(pred_latent.float(), target_latent.float())
        return {'loss_decode': self.target.loss(pred, imgs, mask, ids.ids_masked),
                'loss_align': self.align_weight * loss_align}

    @torch.no_grad()
    def reconstruct(self, imgs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The target predicted for the removed patches, as :meth:`loss` scores it: imgs ``[B, C, H, W]``, mask
        ``[B, L]`` -> ``[B, L, C_t]``, 0 at visible patches (see ``reconstructs_visible``). No alignment branch."""
        ids = split_indices(mask)
        latent = self.encoder.forward_visible(imgs, ids.ids_keep)                # [B, 1 + Lv, D]
        pred = self.decoder(self.regressor(latent, ids.ids_keep, ids.ids_masked), ids.ids_masked)  # [B, Lm, C_t]
        return scatter_tokens(pred, ids.ids_masked, mask.shape[1])

    def _warn_if_teacher_is_stale(self) -> None:
        if not self.training or self.teacher_updated_by_hook:
            return
        self._forwards_since_update += 1
        if self._forwards_since_update == 3:
            warnings.warn("CAE's teacher has not been updated for 2 training steps: add "
                          "dict(type='MomentumTeacherHook') to custom_hooks, or call model.momentum_update() after "
                          'every optimizer step', RuntimeWarning, stacklevel=3)
