"""What every pretraining algorithm shares: the mmengine model protocol and a guard against diverging runs."""
from __future__ import annotations

import torch
import torch.distributed as dist
from mmengine.model import BaseModel

from mimbench.errors import MimbenchError
from mimbench.registry import MODELS


class NonFiniteLossError(MimbenchError, FloatingPointError):
    """Raised before the optimizer step when a loss is NaN or infinite: the step that would spread it into the
    weights never runs. (The runner adds which checkpoint was saved last; it saves only finite weights.)"""


class NonFiniteWeightsError(MimbenchError, FloatingPointError):
    """Raised instead of writing a checkpoint whose weights hold NaN or infinity (a huge but finite loss let
    a bad step through); the message names the last checkpoint saved."""


class BaseAlgorithm(BaseModel):
    """A MIM algorithm is an mmengine ``BaseModel`` whose ``loss(imgs)`` returns a dict of named loss terms.

    Subclasses implement ``loss(imgs [B, C, H, W]) -> dict[str, Tensor]`` (every key containing 'loss' is
    summed into the objective and logged separately) and expose ``self.encoder``. ``forward(mode='tensor')``
    returns the encoder's features for all patches, ``[B, 1 + L, D]``.
    """

    def __init__(self, data_preprocessor: dict | None = None, init_cfg: dict | None = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='ImagePreprocessor')
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)

    def loss(self, imgs: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'loss'):
        if mode == 'loss':
            return self.loss(inputs)
        if mode in ('tensor', 'predict'):
            return self.encoder(inputs)
        raise ValueError(f"mode must be 'loss', 'tensor' or 'predict', got '{mode}'")

    def parse_losses(self, losses: dict) -> tuple[torch.Tensor, dict]:
        loss, log_vars = super().parse_losses(losses)
        # Agree across ranks, so every process stops together instead of one hanging in an all-reduce.
        finite = torch.isfinite(loss.detach()).float()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item() < 1:
            terms = ', '.join(f'{k}={torch.as_tensor(v).detach().item():.4g}' for k, v in log_vars.items())
            raise NonFiniteLossError(
                f'non-finite loss ({terms}); stopped before the optimizer step. Lower the learning rate, enable '
                'gradient clipping, or check the data.')
        return loss, log_vars
