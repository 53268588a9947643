"""Patches projected on their leading principal components as the target: pixels without the fine detail."""
from __future__ import annotations

import io
import os
from numbers import Integral

import torch
import torch.distributed as dist
from mmengine.logging import print_log

from mimbench.fileio import atomic_path
from mimbench.models.patches import patchify
from mimbench.registry import TARGETS
from mimbench.targets.base import Target


def fit_pca(patches: torch.Tensor) -> dict[str, torch.Tensor]:
    """Principal components of ``patches [N, P]`` (N >= 2).

    Returns float32 ``mean [P]``, ``components [P, P]`` (rows orthonormal, by decreasing variance, each signed
    so that its largest entry is positive, which makes the basis reproducible) and ``variances [P]``.
    """
    if patches.dim() != 2 or patches.shape[0] < 2:
        raise ValueError(f'fit_pca needs patches [N, P] with N >= 2, got {tuple(patches.shape)}')
    x = patches.detach().double()
    mean = x.mean(0)
    centered = x - mean
    cov = centered.t() @ centered / (x.shape[0] - 1)
    variances, vectors = torch.linalg.eigh(cov)                       # ascending
    variances, components = variances.flip(0).clamp_min(0), vectors.flip(1).t()
    sign = components.gather(1, components.abs().argmax(1, keepdim=True)).sign()
    return {'mean': mean.float(), 'components': (components * sign).float(), 'variances': variances.float()}


@TARGETS.register_module()
class PCATarget(Target):
    """Per-patch coefficients on the first ``num_components`` principal components of training patches, MSE on
    removed patches only.

    The basis is fitted once: when ``basis_file`` exists it is loaded at construction; otherwise it is fitted on
    the first training batch this target sees (B * L patches, normalized as the model sees them), in memory
    only. Only :func:`fit_basis_file` writes ``basis_file``, from real training images of a config
    (``tools/train.py`` and the ablation driver call it before training): an estimate, a benchmark on synthetic
    images or a test never leaves a basis behind for real runs to load. A basis file is written once and never
    replaced, because the cells that read it carry its content hash in their identity. The file holds the full
    decomposition, so configs with different ``num_components`` share it. If the file appears after this target
    was built (another run fitted it first), that basis is adopted. Under DDP rank 0 fits (or adopts) and the
    others receive its basis. The basis is also part of the model's state dict, so checkpoints and resumed runs
    keep it.

    Args:
        patch_size: side of a patch p; in_chans: image channels C (P = p*p*C values per patch).
        num_components: K, in [1, P].
        basis_file: where the basis is read from (written by :func:`fit_basis_file`; None: fit on the first
            training batch and keep it in the state dict only).
        whiten: divide each coefficient by its standard deviation, so all K components weigh equally in the loss
            (otherwise the first few dominate, as they do in pixel MSE).

    ``channels`` = K. ``forward(imgs [B, C, H, W])`` -> coefficients ``[B, L, K]``;
    ``inverse(coeffs [B, L, K])`` -> patches ``[B, L, P]`` (the projection of the patch on the kept components);
    ``loss(pred, imgs, mask[, ids_masked])`` -> mean over removed patches of the per-patch MSE
    (:meth:`~mimbench.targets.base.Target.loss`).
    """

    def __init__(self, patch_size: int, in_chans: int = 3, num_components: int = 16,
                 basis_file: str | None = None, whiten: bool = False, eps: float = 1e-6):
        super().__init__()
        dim = patch_size * patch_size * in_chans
        if isinstance(num_components, bool) or not isinstance(num_components, Integral) or \
                not 1 <= num_components <= dim:
            raise ValueError(f'num_components must be an int in [1, {dim}] (a {patch_size}x{patch_size}x{in_chans} '
                             f'patch has {dim} values), got {num_components!r}')
        self.patch_size, self.in_chans, self.channels = patch_size, in_chans, int(num_components)
        self.basis_file, self.whiten, self.eps = basis_file, whiten, eps
        self.register_buffer('mean', torch.zeros(dim))
        self.register_buffer('components', torch.zeros(self.channels, dim))
        self.register_buffer('variances', torch.ones(self.channels))
        self.register_buffer('total_variance', torch.tensor(1.0))
        self.register_buffer('fitted', torch.tensor(False))
        if basis_file and os.path.isfile(basis_file):
            self._set_basis(torch.load(basis_file, map_location='cpu', weights_only=True), basis_file)

    def _check_basis(self, basis: dict, source: str) -> None:
        dim = self.mean.numel()
        if basis['components'].shape[-1] != dim:
            raise ValueError(f'PCA basis {source} is for patches of {basis["components"].shape[-1]} values, this '
                             f'target has {dim} (patch_size={self.patch_size}, in_chans={self.in_chans}); delete '
                             f'the file or set target.basis_file to another path')

    def _set_basis(self, basis: dict, source: str) -> None:
        self._check_basis(basis, source)
        k = self.channels
        self.mean.copy_(basis['mean'])
        self.components.copy_(basis['components'][:k])
        self.variances.copy_(basis['variances'][:k])
        self.total_variance.fill_(float(basis['variances'].sum()))
        self.fitted.fill_(True)

    @property
    def kept_variance(self) -> float:
        """Fraction of the fitted patches' variance the kept components explain (after fitting)."""
        return float(self.variances.sum() / self.total_variance) if bool(self.fitted) else float('nan')

    def fit(self, patches: torch.Tensor) -> 'PCATarget':
        """Fit the basis on ``patches [N, P]`` in memory (no file is written); returns self.

        If ``basis_file`` exists by now (another run fitted it after this target was built), that basis is
        adopted instead, so every run configured with the file uses one basis. Under DDP rank 0's basis
        (fitted or adopted) goes to every rank."""
        basis = {k: v.to(self.mean.device) for k, v in fit_pca(patches).items()}
        distributed = dist.is_available() and dist.is_initialized()
        source, note = 'the fit', f'fitted on {patches.shape[0]} patches of the first batch, not saved'
        if self.basis_file and (not distributed or dist.get_rank() == 0) and os.path.isfile(self.basis_file):
            saved = torch.load(self.basis_file, map_location='cpu', weights_only=True)
            source, note = self.basis_file, f'adopted {self.basis_file}, which another run fitted first'
            self._check_basis(saved, source)   # before the broadcast: ranks must receive the shapes they expect
            basis = {k: saved[k].to(self.mean.device) for k in basis}
        if distributed:
            for name in ('mean', 'components', 'variances'):   # a fixed order on every rank
                dist.broadcast(basis[name], 0)
        self._set_basis(basis, source)
        print_log(f'PCA target: {note}; {self.channels} of {patches.shape[1]} components keep '
                  f'{self.kept_variance:.1%} of the variance', logger='current')
        return self

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        # Full precision even under autocast: bf16 coefficients would add noise comparable to the small
        # components' variance.
        with torch.autocast(device_type=imgs.device.type, enabled=False):
            patches = patchify(imgs.float(), self.patch_size)                # [B, L, P]
            if not bool(self.fitted):
                if not self.training:
                    raise RuntimeError('PCATarget has no basis yet: it is fitted on the first training batch or '
                                       'loaded from basis_file')
                self.fit(patches.reshape(-1, patches.shape[-1]))
            coeffs = (patches - self.mean) @ self.components.t()             # [B, L, K]
            return coeffs / (self.variances + self.eps).sqrt() if self.whiten else coeffs

    def inverse(self, coeffs: torch.Tensor, imgs: torch.Tensor | None = None) -> torch.Tensor:
        """Coefficients ``[B, L, K]`` (whitened if ``whiten``) -> patches ``[B, L, P]`` (``imgs`` unused: the
        basis alone maps back)."""
        if self.whiten:
            coeffs = coeffs * (self.variances + self.eps).sqrt()
        return coeffs @ self.components + self.mean

    def per_patch_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred.float() - target).pow(2).mean(dim=-1)


def pca_targets(cfg) -> list[dict]:
    """The ``PCATarget`` configs in ``cfg.model`` (a target may sit at any depth of an algorithm's config)."""
    found = []

    def walk(obj):
        if isinstance(obj, dict):
            if obj.get('type') in ('PCATarget', PCATarget):
                found.append(obj)
            for v in obj.values():
                walk(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v)
    walk(cfg.get('model'))
    return found


def fit_basis_file(cfg, log=print) -> list[str]:
    """Fit and write every missing ``basis_file`` of ``cfg``'s PCA targets from real training images; returns
    the paths written.

    The patches are one training batch (``train_dataloader.batch_size`` images drawn with the config's seed,
    augmented by its pipeline and normalized by its data preprocessor), as the model would see them: the same
    data the basis used to be fitted on inside the first training step, but chosen before training so that a
    cell's identity can include the basis's content. The file is published once: if another process wrote it
    meanwhile, that file stands. It records what it was fitted on and the variance the components keep.
    """
    from mimbench.models.patches import patchify as to_patches
    from mimbench.registry import DATASETS, MODELS
    written = []
    for target in pca_targets(cfg):
        path = target.get('basis_file')
        if not path or os.path.isfile(path):
            continue
        loader = cfg.train_dataloader
        seed = int((cfg.get('randomness') or {}).get('seed', 0) or 0)
        dataset = DATASETS.build(loader.dataset)
        n = min(int(loader.batch_size), len(dataset))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            picks = torch.randperm(len(dataset))[:n].tolist()
            imgs = torch.stack([dataset[i]['inputs'] for i in picks])
        preprocessor = MODELS.build(cfg.model.get('data_preprocessor') or dict(type='ImagePreprocessor'))
        patch_size = target.get('patch_size') or cfg.model.encoder.patch_size
        patches = to_patches(preprocessor.normalize(imgs), patch_size)
        patches = patches.reshape(-1, patches.shape[-1])
        basis = fit_pca(patches)
        kept = int(target.get('num_components', 16))
        # no paths in it: the file's content hash is part of cell identities on every machine
        basis['fitted_on'] = dict(dataset=type(dataset).__name__, split=str(getattr(dataset, 'split', '')),
                                  dataset_size=len(dataset), images=n, patches=int(patches.shape[0]), seed=seed)
        try:
            buffer = io.BytesIO()   # torch.save names its archive after the file: a temp name would enter the hash
            torch.save(basis, buffer)
            with atomic_path(path, exclusive=True) as tmp:
                tmp.write_bytes(buffer.getvalue())
        except FileExistsError:
            continue
        share = float(basis['variances'][:kept].sum() / basis['variances'].sum())
        log(f'PCA basis: fitted on {patches.shape[0]} patches of {n} training images (seed {seed}); '
            f'{kept} components keep {share:.1%} of the variance; wrote {path}')
        written.append(path)
    return written
