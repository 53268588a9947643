"""Attentive probing (the CAE recipe): one cross-attention block pools the patch tokens, then a linear probe.

MIM features describe the whole image rather than a centred object, and a single linear map of the [cls]
token under-rates them; letting a learned query attend over all patch features measures what they hold.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mimbench.engine.precision import bfloat16_products
from mimbench.evaluation.features import Features
from mimbench.machine import dtype_name, resolve_dtype
from mimbench.evaluation.probe import ProbeResult, train_probe


class AttentiveProbeHead(nn.Module):
    """``tokens [B, N, D]`` -> ``[B, num_classes]`` logits.

    One cross-attention block: a learnable class query (zero-initialized, the same for every image) attends
    over the N patch tokens, with a LayerNorm on each of the query, key and value inputs, ``num_heads`` heads
    and an output projection; no MLP and no residual. Its ``[B, D]`` output goes through
    ``BatchNorm1d(affine=False)`` + ``Linear`` as in the linear probe.

    How it is computed (the result equals the textbook block; a test checks this): the query is one vector
    for all images, so each head's logits ``q_h . (W_kh LN_k(x_j))`` reduce to ``LN(x_j) . u_h`` with one
    ``u_h [D]`` per head, and the value projection commutes with the attention average,
    ``sum_j a_j W_vh LN_v(x_j) = W_vh sum_j a_j LN_v(x_j)``. Keys and values are then never materialized:
    ~60x fewer multiply-adds for 64 tokens, which is what makes 90 epochs on CPU take a minute or two.
    The key projection has no bias because a key bias shifts all of a head's logits equally and softmax
    cancels it.

    The normalization part of the three LayerNorms has no parameters, so training normalizes the tokens once
    (:func:`normalize_tokens`) instead of every epoch, with ``inputs_normalized = True`` while it does.
    ``token_dtype=torch.bfloat16`` runs the two products over all tokens (the logits and the attention
    average) in bfloat16 with float32 accumulation: they only stream the tokens through memory, and half the
    bytes make the probe about 3x faster on CPU; everything after them is float32.
    """

    def __init__(self, in_dim: int, num_classes: int, num_heads: int = 8,
                 token_dtype: torch.dtype = torch.float32):
        super().__init__()
        if in_dim % num_heads:
            raise ValueError(f'in_dim {in_dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.inputs_normalized = False
        self.token_dtype = token_dtype
        self.query = nn.Parameter(torch.zeros(1, in_dim))
        self.norm_q = nn.LayerNorm(in_dim, eps=1e-6)
        self.norm_k = nn.LayerNorm(in_dim, eps=1e-6)
        self.norm_v = nn.LayerNorm(in_dim, eps=1e-6)
        self.q = nn.Linear(in_dim, in_dim)
        self.k = nn.Linear(in_dim, in_dim, bias=False)
        self.v = nn.Linear(in_dim, in_dim)
        self.proj = nn.Linear(in_dim, in_dim)
        self.bn = nn.BatchNorm1d(in_dim, affine=False, eps=1e-6)
        self.fc = nn.Linear(in_dim, num_classes)
        for layer in (self.q, self.k, self.v, self.proj):
            nn.init.trunc_normal_(layer.weight, std=0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        nn.init.trunc_normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def attend(self, tokens: torch.Tensor) -> torch.Tensor:
        """Cross-attention of the class query over ``tokens [B, N, D]`` -> pooled ``[B, D]``."""
        B, N, D = tokens.shape
        H, hd = self.num_heads, D // self.num_heads
        # LN_k and LN_v differ only in their affine parameters: normalize once (same eps), apply each below.
        normed = tokens if self.inputs_normalized else normalize_tokens(tokens, self.norm_k.eps)
        normed = normed.to(self.token_dtype)                                              # [B, N, D]
        q = self.q(self.norm_q(self.query)).view(H, hd)                                   # [H, hd]
        u = torch.einsum('hc,hcd->hd', q, self.k.weight.view(H, hd, D)) * self.norm_k.weight * hd ** -0.5
        # The norm_k bias term is the same for every token of a head: softmax ignores it.
        attn = (normed @ u.t().to(normed.dtype)).float().softmax(dim=1)                  # [B, N, H]
        pooled = torch.einsum('bnh,bnd->bhd', attn.to(normed.dtype), normed).float()     # [B, H, D]
        pooled = pooled * self.norm_v.weight + self.norm_v.bias      # LN_v's affine (attn sums to 1)
        out = torch.einsum('bhd,hcd->bhc', pooled, self.v.weight.view(H, hd, D)).reshape(B, D) + self.v.bias
        return self.proj(out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(self.attend(tokens)))


def normalize_tokens(tokens: torch.Tensor, eps: float = 1e-6, dtype: torch.dtype | None = None,
                     chunk: int = 2048) -> torch.Tensor:
    """LayerNorm without affine over the last dim: ``[N, L, D]`` -> ``[N, L, D]`` in ``dtype`` (default: the
    input's), computed in float32 ``chunk`` samples at a time so 50,000 token sets never all exist in float32."""
    dtype = dtype or tokens.dtype
    out = torch.empty(tokens.shape, dtype=dtype)
    for start in range(0, tokens.shape[0], chunk):
        part = tokens[start:start + chunk].float()
        out[start:start + chunk] = F.layer_norm(part, part.shape[-1:], eps=eps).to(dtype)
    return out


def attentive_probe(train: Features, test: Features, num_classes: int, *, num_heads: int = 8, epochs: int = 90,
                    batch_size: int = 1024, base_lr: float = 0.0125, warmup_epochs: float = 10,
                    optimizer: dict | None = None, seed: int = 0, threads: int | str | None = 1,
                    token_dtype: str = 'auto', device: torch.device | str = 'cpu',
                    log: Callable[[str], None] | None = None) -> ProbeResult:
    """Train an :class:`AttentiveProbeHead` on token features ``[N, L, D]``; return its ``test`` accuracy.

    Defaults follow CAE: SGD momentum 0.9, lr 0.4 at batch 8192 (base lr 0.0125 per 256), 90 epochs, no
    augmentation, no weight decay. ``token_dtype``: see :class:`AttentiveProbeHead`; ``'auto'`` is bfloat16 on
    a CPU with bf16 units or an Ampere+ GPU and float32 elsewhere (:func:`~mimbench.machine.resolve_dtype`).
    ``device``: where the head trains (see :func:`~mimbench.evaluation.probe.train_probe`).
    """
    if train.features.dim() != 3:
        raise ValueError(f'the attentive probe needs token features [N, L, D], got {tuple(train.features.shape)}: '
                         f"extract them with pool='tokens'")
    torch.manual_seed(seed)
    run_dtype = resolve_dtype(token_dtype, device)
    head = AttentiveProbeHead(train.features.shape[-1], num_classes, num_heads, run_dtype)
    optimizer = optimizer or dict(type='SGD', momentum=0.9, weight_decay=0.0)
    train, test = (Features(normalize_tokens(f.features, head.norm_k.eps, head.token_dtype), f.labels)
                   for f in (train, test))
    head.inputs_normalized = True
    try:
        with bfloat16_products(torch.device(device).type, enabled=run_dtype == torch.bfloat16):
            result = train_probe(head, train, test, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                                 base_lr=base_lr, warmup_epochs=warmup_epochs, seed=seed, threads=threads,
                                 device=device, log=log)
    finally:
        head.inputs_normalized = False    # the returned head takes raw tokens again
    result.hparams.update(num_heads=num_heads, token_dtype=dtype_name(run_dtype))
    return result
