"""Training a discrete tokenizer with the shared runner (checkpoints, resume, schedules, logging for free)."""
from __future__ import annotations

import torch

from mimbench.algorithms.base import BaseAlgorithm
from mimbench.models.tokenizer import codebook_usage
from mimbench.registry import ENCODERS, MODELS


@MODELS.register_module()
class TokenizerTraining(BaseAlgorithm):
    """Wraps a tokenizer (``VQTokenizer``) so that ``tools/train.py`` / ``tools/train_tokenizer.py`` train it.

    ``loss(imgs [B, C, H, W])`` returns ``loss_recon`` (MSE in the preprocessor's normalized space) and
    ``loss_commit``, plus ``perplexity`` (of this batch's tokens; logged, not optimized).
    ``forward(mode='tensor')`` returns the token ids ``[B, L]``.
    """

    def __init__(self, tokenizer: dict, data_preprocessor: dict | None = None, init_cfg: dict | None = None):
        super().__init__(data_preprocessor, init_cfg)
        self.tokenizer = ENCODERS.build(tokenizer)

    @property
    def encoder(self):
        return self.tokenizer.tokenize

    def loss(self, imgs: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.tokenizer(imgs)
        counts = torch.bincount(out['ids'].flatten(), minlength=self.tokenizer.vocab_size)
        perplexity = torch.tensor(codebook_usage(counts)['perplexity'], device=imgs.device)
        return {'loss_recon': out['loss_recon'], 'loss_commit': out['loss_commit'], 'perplexity': perplexity}
