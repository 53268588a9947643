"""Keep a teacher network (CAE's target encoder) following the trained encoder after every optimizer step."""
from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mimbench.registry import HOOKS


@HOOKS.register_module()
class MomentumTeacherHook(Hook):
    """After every training iteration, call ``model.momentum_update()``.

    A hook rather than an override of the model's ``train_step``: under DDP mmengine's
    ``MMDistributedDataParallel.train_step`` runs the forward and the optimizer step itself and never calls the
    wrapped module's ``train_step``, while ``after_train_iter`` runs after the step in both cases. Its priority
    is above the checkpoint hook's, so a checkpoint holds the teacher that the next step will use and a resumed
    run continues exactly.
    """

    priority = 'ABOVE_NORMAL'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        model.momentum_update()
