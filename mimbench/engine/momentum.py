"""Keep a teacher network (CAE's target encoder) following the trained encoder after every optimizer step."""
from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mimbench.registry import HOOKS


@HOOKS.register_module()
class MomentumTeacherHook(Hook):
    """After every optimizer step, call ``model.momentum_update()``.

    A hook rather than an override of the model's ``train_step``: under DDP mmengine's
    ``MMDistributedDataParallel.train_step`` runs the forward and the optimizer step itself and never calls the
    wrapped module's ``train_step``, while ``after_train_iter`` runs after the step in both cases. Its priority
    is above the checkpoint hook's, so a checkpoint holds the teacher that the next step will use and a resumed
    run continues exactly.

    With gradient accumulation (``optim_wrapper.accumulative_counts = k``) the optimizer steps on every k-th
    iteration only, and so does the teacher: updating it on every iteration would turn a momentum m into m^k
    per step of the encoder.
    """

    priority = 'ABOVE_NORMAL'

    def before_train(self, runner) -> None:
        _unwrap(runner).teacher_updated_by_hook = True   # silences the model's missing-hook warning

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        # right after update_params, should_update() still tells whether that call stepped the optimizer
        stepped = getattr(runner.optim_wrapper, 'should_update', lambda: True)()
        if stepped:
            _unwrap(runner).momentum_update()


def _unwrap(runner):
    return runner.model.module if is_model_wrapper(runner.model) else runner.model
