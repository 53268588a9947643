"""A sampler that can resume in the middle of an epoch."""
from __future__ import annotations

from collections.abc import Iterator, Sized

from mmengine.dataset import DefaultSampler

from mimbench.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class ResumableSampler(DefaultSampler):
    """mmengine's ``DefaultSampler`` (rank/world-size split, seed synced across ranks) plus mid-epoch resume.

    An epoch's order depends only on ``seed + epoch`` (and rank/world size), so after
    ``set_epoch(epoch, start=k)`` this rank yields exactly the samples an uninterrupted run would have drawn
    from its ``k``-th on. ``start`` sticks until the next ``set_epoch`` call, which a train loop makes every
    epoch (``set_epoch(epoch)`` resets it to 0).

    ``len(sampler)`` stays the full per-rank epoch length (what schedulers and epoch bookkeeping expect); the
    number of samples the current iteration will actually yield is ``num_remaining``.

    For the resumed order to match, ``seed`` must be the one of the interrupted run: pass it explicitly
    (mmengine's Runner passes its ``randomness.seed``), since ``seed=None`` draws a fresh random one.
    """

    def __init__(self, dataset: Sized, shuffle: bool = True, seed: int | None = None,
                 round_up: bool = True) -> None:
        super().__init__(dataset, shuffle=shuffle, seed=seed, round_up=round_up)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Use epoch ``epoch``'s order, skipping its first ``start`` samples of this rank (0 <= start <= len)."""
        if not isinstance(start, int) or isinstance(start, bool) or not 0 <= start <= self.num_samples:
            raise ValueError(f'start must be an int in [0, {self.num_samples}] (samples of this rank per '
                             f'epoch), got {start!r}')
        super().set_epoch(epoch)
        self.start = start

    @property
    def num_remaining(self) -> int:
        """How many indices the next ``iter(self)`` yields: ``len(self) - start``."""
        return self.num_samples - self.start

    def __iter__(self) -> Iterator[int]:
        indices = super().__iter__()
        for _ in range(self.start):
            next(indices)
        return indices
