"""Training plumbing on top of mmengine: loop, hooks, optimizer wrappers, checkpoints, distributed setup."""
from mimbench.engine import checkpoint  # noqa: F401  (installs the torch>=2.6 checkpoint loader)
from mimbench.engine.hooks import ThroughputHook, TrainClockHook
from mimbench.engine.loop import MIMTrainLoop, seed_iteration
from mimbench.engine.optim import AutocastOptimWrapper

__all__ = ['AutocastOptimWrapper', 'MIMTrainLoop', 'ThroughputHook', 'TrainClockHook', 'seed_iteration']
