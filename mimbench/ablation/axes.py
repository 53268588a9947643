"""The ablation axes: which values each axis takes, how a value changes the pretraining config, and the
paper's numbers for it.

An axis value is resolved against a :class:`ScaleContext` (image size, patch grid, encoder width of the scale's
base config) because several of the paper's settings are relative: a decoder 512 wide beside a 1024-wide ViT-L
is half the encoder width, so at the micro scale (192 wide) the same row is 96 wide; block masking of 98 of 196
patches is 50% of the grid, 32 of the micro model's 64. Overrides are ``--cfg-options``-style dotted keys;
a dict value with ``_delete_=True`` replaces the config entry instead of merging into it.

Paper numbers are (fine-tune, linear) top-1 on ImageNet-1K with ViT-L/16 after 800 epochs
(``../shared/reference/mim-papers.md``); ``~`` marks points the paper only shows in a figure.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mimbench.errors import MimbenchError


class AblationError(MimbenchError, ValueError):
    """A bad axis, value or scale: the message names it and lists what is allowed."""


@dataclass(frozen=True)
class ScaleContext:
    """What axis values are relative to, read from the scale's base MAE config."""
    img_size: int
    grid: tuple[int, int]
    embed_dim: int

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]


@dataclass(frozen=True)
class PaperResult:
    ft: float | None = None
    lin: float | None = None
    approx: bool = False    # read off a figure

    def cell(self, metric: str) -> str:
        """The table text for ``metric`` ('ft' or 'lin'): '84.9', '~71.8' (read off a figure) or '-'."""
        value = getattr(self, metric)
        if value is None:
            return '-'
        return f'{"~" if self.approx and metric == "lin" else ""}{value:.1f}'


@dataclass(frozen=True)
class AxisValue:
    """One row of an axis: ``key`` is what ``--values`` takes, ``label`` what the table prints."""
    key: str
    label: str
    overrides: dict
    method: str = 'mae'
    paper: PaperResult = PaperResult()
    paper_default: bool = False
    x: float | None = None            # position on the axis's plot
    pretrain: bool = True             # False: the encoder stays at its random init (the scratch row)


@dataclass(frozen=True)
class Axis:
    """An ablation axis. ``values(ctx)`` gives the rows in table order; numeric axes also accept values that
    are not in the paper (``parse`` turns a ``--values`` string into a row)."""
    name: str
    title: str
    column: str
    finding: str
    rows: Callable[[ScaleContext], list[AxisValue]]
    parse: Callable[[str, ScaleContext], AxisValue] | None = None
    plot: str | None = None           # x-axis label when the paper draws this axis as a curve
    extra_columns: tuple[str, ...] = field(default_factory=tuple)

    def values(self, ctx: ScaleContext, keys: list[str] | None = None) -> list[AxisValue]:
        rows = self.rows(ctx)
        if not keys:
            return rows
        by_key = {r.key: r for r in rows}
        out = []
        for key in keys:
            if key in by_key:
                out.append(by_key[key])
            elif self.parse is not None:
                out.append(self.parse(key, ctx))
            else:
                raise AblationError(f"axis {self.name!r} has no value {key!r}; valid values: {', '.join(by_key)}")
        return out


def _number(text: str, axis: str, kind=float, low=None, high=None):
    try:
        value = kind(text)
    except ValueError:
        raise AblationError(f"axis {axis!r} takes {kind.__name__} values, got {text!r}") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise AblationError(f'axis {axis!r}: {text} is outside [{low}, {high}]')
    return value


def _fmt(v: float) -> str:
    return f'{v:g}'


# (a) decoder depth ---------------------------------------------------------------------------------------------
_DEPTH_PAPER = {1: (84.8, 65.5), 2: (84.9, 70.0), 4: (84.9, 71.9), 8: (84.9, 73.5), 12: (84.4, 73.3)}


def _depth_value(depth: int) -> AxisValue:
    ft, lin = _DEPTH_PAPER.get(depth, (None, None))
    return AxisValue(key=str(depth), label=str(depth), overrides={'model.decoder.depth': depth},
                     paper=PaperResult(ft, lin), paper_default=depth == 8, x=depth)


DECODER_DEPTH = Axis(
    name='decoder_depth', title='Decoder depth (MAE Table 1a)', column='blocks',
    finding='A deeper decoder helps linear probing; fine-tuning barely moves.',
    rows=lambda ctx: [_depth_value(d) for d in _DEPTH_PAPER],
    parse=lambda s, ctx: _depth_value(_number(s, 'decoder_depth', int, 1, 64)),
    plot='decoder depth (blocks)')

# (b) decoder width: the paper's widths over ViT-L's 1024 --------------------------------------------------------
_WIDTH_PAPER = {128: (84.9, 69.1), 256: (84.8, 71.3), 512: (84.9, 73.5), 768: (84.4, 73.1), 1024: (84.3, 73.1)}
PAPER_ENCODER_WIDTH = 1024


def _width_value(width: int, ctx: ScaleContext) -> AxisValue:
    paper_width = width * PAPER_ENCODER_WIDTH / ctx.embed_dim
    ft, lin = _WIDTH_PAPER.get(round(paper_width), (None, None)) if paper_width.is_integer() else (None, None)
    label = str(width) if width == paper_width else f'{width} (paper {paper_width:g})'
    return AxisValue(key=str(width), label=label, overrides={'model.decoder.embed_dim': width},
                     paper=PaperResult(ft, lin), paper_default=paper_width == 512, x=width)


DECODER_WIDTH = Axis(
    name='decoder_width', title='Decoder width (MAE Table 1b)', column='width',
    finding='The decoder can be narrower than the encoder.',
    rows=lambda ctx: [_width_value(w * ctx.embed_dim // PAPER_ENCODER_WIDTH, ctx) for w in _WIDTH_PAPER],
    parse=lambda s, ctx: _width_value(_number(s, 'decoder_width', int, 1, 1 << 16), ctx),
    plot='decoder width (channels)')

# (c) mask token ---------------------------------------------------------------------------------------------------
MASK_TOKEN = Axis(
    name='mask_token', title='Mask token (MAE Table 1c)', column='case',
    # the paper's 3.3x counts the whole model (ViT-L encoder and its 8-block decoder); our mae_vitl.py config
    # counts 3.23x whole model and 4.00x encoder only (FlopCounterMode, batch 1), so both columns are shown
    finding='Skipping mask tokens in the encoder is both more accurate and cheaper (paper: 3.3x the whole '
            "model's FLOPs with [M], ViT-L; our ViT-L config counts 3.23x whole model, 4.00x encoder only).",
    rows=lambda ctx: [
        AxisValue('with', 'encoder w/ [M]', {'model.mask_token_in_encoder': True}, paper=PaperResult(84.2, 59.6)),
        # MAE's default: no override, so this row is the same run as every axis's default row
        AxisValue('without', 'encoder w/o [M]', {},
                  paper=PaperResult(84.9, 73.5), paper_default=True)],
    extra_columns=('encoder FLOPs', 'model FLOPs'))

# (d) reconstruction target ----------------------------------------------------------------------------------------


def _target_rows(ctx: ScaleContext) -> list[AxisValue]:
    # the paper keeps 96 of 768 dimensions (16 x 16 x 3 patches); a 4 x 4 x 3 patch has only 48, of which the
    # micro PCA config keeps 16 (one third), so: one eighth of the patch, at least 16
    patch_dim = 3 * (ctx.img_size // ctx.grid[0]) ** 2
    pca_components = max(16, patch_dim // 8)
    tokenizer = 'work_dirs/tokenizer_cifar10/tokenizer.pth' if ctx.img_size <= 64 else \
        'work_dirs/tokenizer_imagenet/tokenizer.pth'
    return [
        AxisValue('pixel', 'pixel (w/o norm)',
                  {'model.target': dict(_delete_=True, type='PixelTarget', normalize=False)},
                  paper=PaperResult(84.9, 73.5), paper_default=True),
        AxisValue('norm_pixel', 'pixel (w/ norm)', {'model.target': dict(_delete_=True, type='PixelTarget',
                                                                         normalize=True)},
                  paper=PaperResult(85.4, 73.9)),
        # the basis depends on the patch size: each scale has its own file, fitted once from real images before any
        # cell runs and never replaced (its content is part of the cells' identity)
        AxisValue('pca', f'PCA ({pca_components} components)',
                  {'model.target': dict(_delete_=True, type='PCATarget', num_components=pca_components,
                                        basis_file=f'work_dirs/pca_basis_{ctx.img_size}px_g{ctx.grid[0]}.pth')},
                  paper=PaperResult(84.6, 72.3)),
        AxisValue('token', 'dVAE token (ours: VQ tokenizer)',
                  {'model.target': dict(_delete_=True, type='TokenTarget', checkpoint=tokenizer)},
                  paper=PaperResult(85.3, 71.6)),
    ]


TARGET = Axis(name='target', title='Reconstruction target (MAE Table 1d)', column='target',
              finding='Normalized pixels are best; PCA and tokens are no better than raw pixels.',
              rows=_target_rows)

# (e) data augmentation --------------------------------------------------------------------------------------------


def _aug_rows(ctx: ScaleContext) -> list[AxisValue]:
    s = ctx.img_size
    key = 'train_dataloader.dataset.pipeline'
    flip = dict(type='RandomHorizontalFlip')
    rrc = dict(type='RandomResizedCrop', size=s, scale=(0.2, 1.0))
    return [
        # "none" still has to bring every image to the model's size: resize + centre crop (no-ops at 32 px)
        AxisValue('none', 'none', {key: [dict(type='Resize', size=s), dict(type='CenterCrop', size=s)]},
                  paper=PaperResult(84.0, 65.7)),
        # fixed-size crop: the 224-from-256 crop of ImageNet practice, i.e. resize to 8/7 of the size
        AxisValue('fixed_crop', 'crop, fixed size',
                  {key: [dict(type='Resize', size=round(s * 8 / 7)), dict(type='RandomCrop', size=s), flip]},
                  paper=PaperResult(84.7, 73.1)),
        AxisValue('rand_crop', 'crop, rand size', {key: [rrc, flip]}, paper=PaperResult(84.9, 73.5),
                  paper_default=True),
        AxisValue('crop_jitter', 'crop + color jit',
                  {key: [rrc, flip, dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4)]},
                  paper=PaperResult(84.3, 71.9)),
    ]


AUGMENTATION = Axis(name='augmentation', title='Data augmentation (MAE Table 1e)', column='case',
                    finding='MAE needs little or no augmentation; colour jitter hurts.', rows=_aug_rows)

# (f) mask sampling ------------------------------------------------------------------------------------------------


def _block(ratio: float, ctx: ScaleContext) -> dict:
    # BEiT's minimum block of 16 patches out of 196, scaled to the grid
    return dict(_delete_=True, type='BlockMasker', num_masked=round(ratio * ctx.num_patches),
                min_block_patches=max(1, round(16 * ctx.num_patches / 196)))


MASK_SAMPLING = Axis(
    name='mask_sampling', title='Mask sampling (MAE Table 1f)', column='case',
    finding='Random sampling is best; block-wise at 75% and grid are clearly worse.',
    rows=lambda ctx: [
        AxisValue('random75', 'random 75%', {'model.masker': dict(_delete_=True, type='RandomMasker', ratio=0.75)},
                  paper=PaperResult(84.9, 73.5), paper_default=True),
        AxisValue('block50', 'block 50%', {'model.masker': _block(0.5, ctx)}, paper=PaperResult(83.9, 72.3)),
        AxisValue('block75', 'block 75%', {'model.masker': _block(0.75, ctx)}, paper=PaperResult(82.8, 63.9)),
        AxisValue('grid75', 'grid 75%', {'model.masker': dict(_delete_=True, type='GridMasker', cell=2)},
                  paper=PaperResult(84.0, 66.0)),
    ])

# mask ratio (paper Figure 5) --------------------------------------------------------------------------------------
_RATIO_FT = {0.1: 83.2, 0.2: 83.4, 0.3: 83.4, 0.4: 84.7, 0.5: 84.9, 0.6: 85.0, 0.7: 84.9, 0.75: 84.9, 0.8: 84.5,
             0.9: 83.0}
_RATIO_LIN = {0.1: 54.6, 0.2: 58.9, 0.3: 61.7, 0.4: 67.0, 0.5: 69.9, 0.6: 71.8, 0.7: 73.2, 0.75: 73.5, 0.8: 71.8,
              0.9: 66.0}
_RATIO_EXACT_LIN = (0.1, 0.75)      # the text gives these two; the others are read off the figure


def _ratio_value(ratio: float) -> AxisValue:
    ratio = round(ratio, 4)
    return AxisValue(key=_fmt(ratio), label=f'{ratio * 100:g}%',
                     overrides={'model.masker': dict(_delete_=True, type='RandomMasker', ratio=ratio)},
                     paper=PaperResult(_RATIO_FT.get(ratio), _RATIO_LIN.get(ratio),
                                       approx=ratio in _RATIO_LIN and ratio not in _RATIO_EXACT_LIN),
                     paper_default=ratio == 0.75, x=ratio * 100)


MASK_RATIO = Axis(
    name='mask_ratio', title='Mask ratio (MAE Figure 5)', column='ratio',
    finding='Fine-tuning is flat over 40-80%; linear probing climbs to a peak at 75%.',
    rows=lambda ctx: [_ratio_value(r) for r in _RATIO_FT],
    # the paper states ratios in percent: 75 and 0.75 both mean 75%
    parse=lambda s, ctx: _ratio_value(_number(s, 'mask_ratio', float, 0.01, 99) / (100 if float(s) > 1 else 1)),
    plot='mask ratio (%)')

# method comparison (MAE Table 3 with CAE's ViT-L numbers) ---------------------------------------------------------
METHOD = Axis(
    name='method', title='Method (ViT-L/16, ImageNet-1K; MAE Table 3, CAE)', column='method',
    finding='Pretraining beats scratch; MAE and CAE above BEiT in fine-tuning (paper rows: 1600 epochs for MAE '
            'and CAE, 800 for BEiT; lin from MAE Figure 7 and the CAE paper).',
    rows=lambda ctx: [
        AxisValue('scratch', 'scratch (random init)', {}, paper=PaperResult(82.6, None), pretrain=False),
        AxisValue('mae', 'MAE', {}, paper=PaperResult(85.9, 75.1), paper_default=True),
        AxisValue('cae', 'CAE', {}, method='cae', paper=PaperResult(86.2, 77.8)),
        AxisValue('beit', 'BEiT-style', {}, method='beit', paper=PaperResult(85.2, None)),
    ])


def _cae_value(key: str, value: float, default: float) -> AxisValue:
    return AxisValue(key=_fmt(value), label=_fmt(value), overrides={key: value}, method='cae',
                     paper_default=value == default, x=value)


CAE_ALIGN_WEIGHT = Axis(
    name='cae_align_weight', title='CAE alignment weight lambda', column='lambda',
    finding='The paper uses lambda = 2 and reports that CAE degrades without alignment (no sweep published).',
    rows=lambda ctx: [_cae_value('model.align_weight', v, 2.0) for v in (0.0, 0.5, 1.0, 2.0, 4.0)],
    parse=lambda s, ctx: _cae_value('model.align_weight',
                                    _number(s, 'cae_align_weight', float, 0.0, None), 2.0),
    plot='alignment weight lambda')

CAE_MOMENTUM = Axis(
    name='cae_momentum', title='CAE teacher momentum', column='momentum',
    finding="The authors' code uses m = 0 (the teacher is a fresh copy each step); no sweep published.",
    rows=lambda ctx: [_cae_value('model.momentum', v, 0.0) for v in (0.0, 0.9, 0.99, 0.999)],
    parse=lambda s, ctx: _cae_value('model.momentum', _number(s, 'cae_momentum', float, 0.0, 1.0),
                                    0.0))

AXES: dict[str, Axis] = {a.name: a for a in (
    DECODER_DEPTH, DECODER_WIDTH, MASK_TOKEN, TARGET, AUGMENTATION, MASK_SAMPLING, MASK_RATIO, METHOD,
    CAE_ALIGN_WEIGHT, CAE_MOMENTUM)}
# not training axes: 'speed' measures steps only (mimbench.ablation.speed); 'all' is every axis above
SPECIAL_AXES = ('all', 'speed')


def get_axis(name: str) -> Axis:
    if name not in AXES:
        raise AblationError(f"unknown axis {name!r}; valid axes: {', '.join([*AXES, *SPECIAL_AXES])}")
    return AXES[name]
