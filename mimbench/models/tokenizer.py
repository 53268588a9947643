"""A small VQ-VAE that turns an image into one discrete token per patch position (BEiT/CAE token targets)."""
from __future__ import annotations

import math
from numbers import Integral

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from mimbench.registry import ENCODERS


class _Residual(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU(), nn.Conv2d(dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f'{name} must be a positive int, got {value!r}')
    return int(value)


@ENCODERS.register_module()
class VQTokenizer(nn.Module):
    """VQ-VAE (van den Oord et al. 2017) with an EMA codebook and dead-code restarts.

    Convolutional encoder downsampling by ``downsample`` (a power of two, equal to the MIM patch size so that
    there is one token per patch), nearest-codeword quantization into a vocabulary of ``vocab_size``, and a
    mirrored decoder. The codebook is not trained by gradients: each training forward moves every codeword to
    an exponential moving average of the encoder outputs assigned to it, which avoids the codebook-loss tuning
    of the original VQ-VAE. A codeword whose average use falls below ``dead_threshold`` vectors per batch is
    restarted at a random encoder output of the current batch, so the vocabulary stays in use.

    Args:
        vocab_size: number of codewords V.
        code_dim: width of a codeword.
        hidden_dim: channels of the convolutional layers.
        downsample: encoder stride; images of side S give ``(S / downsample)**2`` tokens.
        in_chans: image channels.
        commitment: weight of the commitment loss ``||z - sg(e)||^2``.
        ema_decay: decay of the codebook moving averages, in [0, 1).
        dead_threshold: restart codewords used by fewer vectors than this per batch (moving average); 0: never.

    ``forward(imgs [B, C, H, W])`` -> dict with ``recon [B, C, H, W]``, ``ids [B, L]``, ``loss_recon`` (MSE)
    and ``loss_commit``. ``tokenize(imgs) -> ids [B, L]`` (long, in [0, V)); ``decode(ids [B, L]) -> imgs``.
    Images are expected in the normalization the tokenizer was trained with (checkpoints store mean/std).
    """

    def __init__(self, vocab_size: int = 512, code_dim: int = 32, hidden_dim: int = 64, downsample: int = 4,
                 in_chans: int = 3, commitment: float = 0.25, ema_decay: float = 0.99, dead_threshold: float = 1.0):
        super().__init__()
        self.vocab_size = _check_positive_int('vocab_size', vocab_size)
        if self.vocab_size < 2:
            raise ValueError(f'vocab_size must be >= 2, got {vocab_size}')
        code_dim = _check_positive_int('code_dim', code_dim)
        hidden_dim = _check_positive_int('hidden_dim', hidden_dim)
        downsample = _check_positive_int('downsample', downsample)
        if downsample & (downsample - 1):
            raise ValueError(f'downsample must be a power of two (1, 2, 4, 8, ...), got {downsample}')
        if not 0 <= ema_decay < 1:
            raise ValueError(f'ema_decay must be in [0, 1), got {ema_decay}')
        self.downsample = downsample
        self.in_chans = in_chans
        self.code_dim = code_dim
        self.commitment = commitment
        self.ema_decay = ema_decay
        self.dead_threshold = dead_threshold

        steps = int(math.log2(downsample))
        down = [nn.Conv2d(in_chans, hidden_dim, 3, padding=1)]
        for _ in range(steps):
            down += [nn.ReLU(), nn.Conv2d(hidden_dim, hidden_dim, 4, stride=2, padding=1)]
        self.encoder = nn.Sequential(*down, _Residual(hidden_dim), _Residual(hidden_dim), nn.ReLU(),
                                     nn.Conv2d(hidden_dim, code_dim, 1))
        up = [nn.Conv2d(code_dim, hidden_dim, 3, padding=1), _Residual(hidden_dim), _Residual(hidden_dim)]
        for _ in range(steps):
            up += [nn.ReLU(), nn.ConvTranspose2d(hidden_dim, hidden_dim, 4, stride=2, padding=1)]
        self.decoder = nn.Sequential(*up, nn.ReLU(), nn.Conv2d(hidden_dim, in_chans, 3, padding=1))

        self.register_buffer('codebook', torch.randn(vocab_size, code_dim))
        self.register_buffer('ema_count', torch.zeros(vocab_size))
        self.register_buffer('ema_sum', torch.zeros(vocab_size, code_dim))
        # Codewords start at encoder outputs of the first training batch: random vectors far from the data would
        # mostly go unused.
        self.register_buffer('initialized', torch.tensor(False))

    def _nearest(self, z: torch.Tensor) -> torch.Tensor:
        """``z [N, code_dim]`` -> ids ``[N]`` of the nearest codewords (squared Euclidean distance)."""
        dist2 = (z.pow(2).sum(1, keepdim=True) - 2 * z @ self.codebook.t() + self.codebook.pow(2).sum(1)[None])
        return dist2.argmin(1)

    def _encode(self, imgs: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> continuous codes ``[B, h, w, code_dim]``."""
        if imgs.shape[-1] % self.downsample or imgs.shape[-2] % self.downsample:
            raise ValueError(f'image size {tuple(imgs.shape[-2:])} is not a multiple of the tokenizer downsample '
                             f'{self.downsample}')
        return self.encoder(imgs).permute(0, 2, 3, 1)

    @torch.no_grad()
    def tokenize(self, imgs: torch.Tensor) -> torch.Tensor:
        """``imgs [B, C, H, W]`` -> token ids ``[B, L]`` in [0, vocab_size), row-major like the patches."""
        z = self._encode(imgs.float())
        return self._nearest(z.reshape(-1, self.code_dim)).view(z.shape[0], -1)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids ``[B, L]`` on a square grid -> images ``[B, C, H, W]``."""
        side = math.isqrt(ids.shape[1])
        codes = self.codebook[ids].view(ids.shape[0], side, side, self.code_dim).permute(0, 3, 1, 2)
        return self.decoder(codes)

    def forward(self, imgs: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self._encode(imgs)                                      # [B, h, w, c]
        flat = z.reshape(-1, self.code_dim)
        if self.training and not bool(self.initialized):
            self._init_codebook(flat.detach())
        ids = self._nearest(flat.detach())
        if self.training:
            self._ema_update(flat.detach(), ids)
        quantized = self.codebook[ids].view_as(z)
        loss_commit = self.commitment * F.mse_loss(z, quantized)
        # Straight-through: the decoder's gradient reaches the encoder as if quantization were the identity.
        z_q = z + (quantized - z).detach()
        recon = self.decoder(z_q.permute(0, 3, 1, 2))
        return {'recon': recon, 'ids': ids.view(z.shape[0], -1), 'loss_recon': F.mse_loss(recon, imgs),
                'loss_commit': loss_commit}

    @torch.no_grad()
    def _init_codebook(self, flat: torch.Tensor) -> None:
        pick = torch.randint(0, flat.shape[0], (self.vocab_size,), device=flat.device)
        self.codebook.copy_(flat[pick])
        self.ema_sum.copy_(flat[pick] * self._fair_share(flat))
        self.ema_count.fill_(self._fair_share(flat))
        self.initialized.fill_(True)
        self._sync_codebook()

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, ids: torch.Tensor) -> None:
        counts = torch.bincount(ids, minlength=self.vocab_size).to(flat.dtype)
        sums = torch.zeros_like(self.ema_sum).index_add_(0, ids, flat)
        if dist.is_available() and dist.is_initialized():   # one codebook for all ranks
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        d = self.ema_decay
        self.ema_count.mul_(d).add_(counts, alpha=1 - d)
        self.ema_sum.mul_(d).add_(sums, alpha=1 - d)
        self.codebook.copy_(self.ema_sum / self.ema_count.clamp_min(1e-5)[:, None])
        dead = self.ema_count < self.dead_threshold
        if dead.any():
            pick = torch.randint(0, flat.shape[0], (int(dead.sum()),), device=flat.device)
            self.codebook[dead] = flat[pick]
            self.ema_sum[dead] = flat[pick] * self._fair_share(flat)
            self.ema_count[dead] = self._fair_share(flat)
            self._sync_codebook()

    def _fair_share(self, flat: torch.Tensor) -> float:
        # A new codeword starts with the average use per batch, so it has time to attract vectors before the
        # moving average could call it dead again.
        return flat.shape[0] / self.vocab_size

    def _sync_codebook(self) -> None:
        if dist.is_available() and dist.is_initialized():   # restarts draw from each rank's own batch
            for buf in (self.codebook, self.ema_sum, self.ema_count):
                dist.broadcast(buf, 0)


def codebook_usage(counts: torch.Tensor) -> dict[str, float]:
    """Usage of a vocabulary from token counts ``[V]``: perplexity ``exp(entropy)`` (V when uniform, 1 when a
    single code is used), the number and fraction of codes never used (dead)."""
    probs = counts.double() / counts.sum().clamp_min(1)
    entropy = -(probs * probs.clamp_min(1e-30).log()).sum()
    dead = int((counts == 0).sum())
    return {'perplexity': float(entropy.exp()), 'dead_codes': dead, 'dead_fraction': dead / counts.numel(),
            'vocab_size': counts.numel()}
