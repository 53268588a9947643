"""The speed axis: MAE's wall-clock table (He et al. 2022, Table 2) measured on this machine.

Three MAE variants of one pretraining config, differing only in where the mask tokens go and how deep the
decoder is:

    encoder w/ [M], decoder depth 8   the encoder runs over all 1 + L tokens, [M] at removed patches
    encoder, decoder depth 8          the encoder runs over the 1 + Lv visible tokens only (MAE)
    encoder, decoder depth 1          the same with a one-block decoder

For each: train-step GFLOPs and encoder-forward GFLOPs per image, the median train-step time, and the speedup
over the w/ [M] row, printed beside the paper's ViT-L figures.

FLOPs are counted with :func:`mimbench.analysis.count_flops` (torch's ``FlopCounterMode``, attention included
on every device; a multiply-add = 2 FLOPs). The timing runs the normal (fused) kernels.
"""
from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path
from typing import NamedTuple

import torch
from mmengine.config import Config

from mimbench.analysis.benchmark import benchmark_algorithm, count_flops
from mimbench.engine.runner import load_config
from mimbench.fileio import write_text_atomic
from mimbench.machine import describe
from mimbench.masking.indices import split_indices
from mimbench.registry import MODELS


class SpeedRow(NamedTuple):
    """One row of the table and the paper's figures for it (ViT-L, 800 epochs, 128 TPU-v3 cores)."""

    label: str
    mask_token_in_encoder: bool
    decoder_depth: int
    paper: dict  # ft: fine-tune top-1 (%), hours: pretraining wall-clock, speedup: over the w/ [M] row


SPEED_ROWS = (
    SpeedRow('encoder w/ [M], decoder depth 8', True, 8, dict(ft=84.2, hours=42.4, speedup=1.0)),
    SpeedRow('encoder, decoder depth 8', False, 8, dict(ft=84.9, hours=15.4, speedup=2.8)),
    SpeedRow('encoder, decoder depth 1', False, 1, dict(ft=84.8, hours=11.6, speedup=3.7)),
)


def speed_cells(base_config: str, cfg_options: dict | None = None) -> list[tuple[str, Config]]:
    """One config per :data:`SPEED_ROWS` row, from an MAE pretraining config file.

    Only ``model.mask_token_in_encoder`` and ``model.decoder.depth`` differ between the cells; ``cfg_options``
    (``--cfg-options`` style, e.g. ``{'model.masker.ratio': 0.5}``) apply to all three.
    """
    base = load_config(base_config, cfg_options)
    if base.model.get('type') != 'MAE':
        raise ValueError(f"the speed axis compares MAE variants; {base_config} builds "
                         f"model type '{base.model.get('type')}'")
    cells = []
    for row in SPEED_ROWS:
        cfg = copy.deepcopy(base)
        cfg.model.mask_token_in_encoder = row.mask_token_in_encoder
        cfg.model.decoder.depth = row.decoder_depth
        cells.append((row.label, cfg))
    return cells


def analytic_encoder_flops(depth: int, dim: int, tokens: int, mlp_ratio: float = 4.0, *,
                           num_patches: int = 0, patch_dim: int = 0) -> float:
    """Forward FLOPs of a ViT encoder over one image, a multiply-add counting 2 FLOPs.

    Per block over ``tokens`` = T tokens of width D (T counts the cls token):
        qkv projection 2*3*T*D^2, attention scores 2*T^2*D, attention-weighted values 2*T^2*D,
        output projection 2*T*D^2, MLP 2*2*T*D*H with H = int(mlp_ratio * D) (timm's hidden width).
    Plus the patch embedding, 2 * num_patches * patch_dim * D (``patch_dim`` = in_chans * patch_size^2), when
    given: it is a convolution, which FlopCounterMode counts. Pass all L patches as ``num_patches`` even for
    the visible-only encoder, since MAE drops tokens after embedding them.

    Left out, as FlopCounterMode leaves them out: biases, LayerNorms, GELU, softmax, the attention scale,
    position embeddings, residual additions, gathers and [M] substitution. That is all the non-matmul work;
    with attention counted as matmuls (see the module docstring) the formula equals the measured count.
    """
    hidden = int(mlp_ratio * dim)
    per_block = (2 * 3 * tokens * dim ** 2 + 2 * tokens ** 2 * dim + 2 * tokens ** 2 * dim
                 + 2 * tokens * dim ** 2 + 2 * 2 * tokens * dim * hidden)
    return float(depth * per_block + 2 * num_patches * patch_dim * dim)


def encoder_forward(model: torch.nn.Module, imgs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The encoder pass ``MAE.loss`` makes: imgs ``[B, C, H, W]``, mask ``[B, L]`` bool (True = removed).

    Returns ``[B, 1 + L, D]`` for an encoder w/ [M], ``[B, 1 + Lv, D]`` for the visible-only encoder.
    """
    if model.mask_token_in_encoder:
        return model.encoder.forward_masked(imgs, mask)
    return model.encoder.forward_visible(imgs, split_indices(mask).ids_keep)


def encoder_flops(model: torch.nn.Module, imgs: torch.Tensor, mask: torch.Tensor) -> int:
    """FlopCounterMode FLOPs of :func:`encoder_forward` over the whole batch."""
    # autograd stays on: the same FLOPs, and FlopCounterMode's module tracker needs it (see benchmark.py)
    return count_flops(lambda: encoder_forward(model, imgs, mask))


def train_flops(model: torch.nn.Module, imgs: torch.Tensor) -> int:
    """FlopCounterMode FLOPs of one training loss, forward + backward, over the whole batch ``imgs``."""
    def step():
        losses = model.loss(imgs)
        sum(v for k, v in losses.items() if 'loss' in k).backward()

    flops = count_flops(step)
    model.zero_grad(set_to_none=True)
    return flops


def measure_speed(cfg: Config, batch_size: int, iters: int, warmup: int,
                  device: str | torch.device | None = None) -> dict:
    """Time and count one speed cell.

    The train step (forward + backward + AdamW on random images, no data pipeline) is timed by
    :func:`~mimbench.analysis.benchmark_algorithm`. FLOPs are counted here on one image instead of the
    batch: no operation mixes images, so the per-image figure is the same and a large model pays one image's
    compute for it, not a batch's. Returns a flat dict of plain numbers and strings (JSON-ready).
    """
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    image_size = model.encoder.grid[0] * model.encoder.patch_size
    bench = benchmark_algorithm(model, image_size, batch_size, warmup=warmup, iters=iters, device=device,
                                with_matmul=False)
    device = next(model.parameters()).device   # where benchmark_algorithm put it
    imgs = torch.randn(1, model.encoder.in_chans, image_size, image_size, device=device)
    mask = model.masker(1, device=device)
    tokens = 1 + (mask.shape[1] if model.mask_token_in_encoder else int((~mask[0]).sum()))
    return dict(
        mask_token_in_encoder=bool(model.mask_token_in_encoder),
        decoder_depth=len(model.decoder.blocks),
        encoder_tokens=tokens,
        train_gflops_per_img=train_flops(model, imgs) / 1e9,
        encoder_gflops_per_img=encoder_flops(model, imgs, mask) / 1e9,
        train_s_per_step=batch_size / bench.train_img_per_s,
        train_img_per_s=bench.train_img_per_s,
        batch_size=batch_size, iters=iters, warmup=warmup,
        device=device.type, machine=describe(device), threads=torch.get_num_threads(),
        torch=torch.__version__, date=datetime.date.today().isoformat(),
    )


def speed_table(results: list[dict]) -> str:
    """Markdown table of ``results`` (dicts from :func:`measure_speed` with a ``label``), rows in
    :data:`SPEED_ROWS` order, followed by a note on how and where they were measured.

    Speedup is the w/ [M] row's s/step over the row's ("n/a" when that row is missing). A row whose result
    is missing is left out; an unknown label is an error.
    """
    known = {row.label: row for row in SPEED_ROWS}
    by_label = {}
    for result in results:
        if result['label'] not in known:
            raise ValueError(f"unknown speed row '{result['label']}'; rows: {', '.join(known)}")
        by_label[result['label']] = result
    if not by_label:
        raise ValueError('no speed results to tabulate')
    baseline = by_label.get(SPEED_ROWS[0].label)

    lines = ['| row | train GFLOPs/img | encoder fwd GFLOPs/img | s/step | img/s | speedup | paper speedup (ViT-L) |',
             '|---|---|---|---|---|---|---|']
    for row in SPEED_ROWS:
        r = by_label.get(row.label)
        if r is None:
            continue
        speedup = f"{baseline['train_s_per_step'] / r['train_s_per_step']:.2f}x" if baseline else 'n/a'
        paper = f"{row.paper['speedup']:.1f}x ({row.paper['hours']} h, ft {row.paper['ft']})"
        lines.append(f"| {row.label} | {r['train_gflops_per_img']:.4g} | {r['encoder_gflops_per_img']:.4g} | "
                     f"{r['train_s_per_step']:.4g} | {r['train_img_per_s']:.4g} | {speedup} | {paper} |")
    first = next(iter(by_label.values()))
    lines += ['', (
        f"Measured on {first['machine']} ({first['device']}, {first['threads']} threads, torch {first['torch']}) "
        f"on {first['date']}: batch {first['batch_size']}, median of {first['iters']} train steps "
        f"(forward + backward + AdamW) after {first['warmup']} warm-up steps. GFLOPs are counted by torch "
        f"FlopCounterMode (train: forward + backward; encoder: forward over the tokens it sees), attention "
        f"counted as its two matmuls. Paper: MAE Table 2, ViT-L, 800 epochs on 128 TPU-v3 cores "
        f"(pretraining hours, fine-tune top-1 %).")]
    return '\n'.join(lines) + '\n'


def run_speed_axis(scale_base_config: str, out_md: str | Path, batch_size: int, iters: int, warmup: int,
                   log=print, *, device: str | None = None, cfg_options: dict | None = None) -> list[dict]:
    """Measure every :data:`SPEED_ROWS` row of an MAE config, write the table to ``out_md`` and the raw
    figures to the ``.json`` beside it, and return the results (one dict per row, with its ``label``).

    Run it on an otherwise idle machine: anything sharing the cores slows every row, and not equally.
    """
    results = []
    for label, cfg in speed_cells(scale_base_config, cfg_options):
        log(f'speed: {label}: batch {batch_size}, {warmup} warm-up + {iters} timed steps')
        result = dict(label=label, **measure_speed(cfg, batch_size, iters, warmup, device=device))
        log(f"speed: {label}: {result['train_s_per_step']:.4g} s/step, "
            f"{result['train_gflops_per_img']:.4g} train GFLOPs/img")
        results.append(result)
    out_md = Path(out_md)
    options = f' with {", ".join(f"{k}={v}" for k, v in cfg_options.items())}' if cfg_options else ''
    write_text_atomic(out_md, f'# Speed axis: {scale_base_config}{options}\n\n' + speed_table(results))
    raw = dict(base_config=str(scale_base_config), cfg_options=cfg_options or {}, results=results)
    write_text_atomic(out_md.with_suffix('.json'), json.dumps(raw, indent=2) + '\n')
    return results
