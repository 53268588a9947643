# The schedule study (issue 25): at how many pretraining epochs does each of the papers' findings appear at
# CIFAR scale? The same cells at 5, 10 and 20 epochs; `python tools/ablate.py --study schedule` runs what is
# missing in the order below (every step resumes), `--study schedule --report` writes
# docs/results/schedule_study.md and its figure from the stores alone.
study = 'schedule'
title = 'When do the papers\' effects appear? The decisive rows at 5, 10 and 20 pretraining epochs'
# epochs -> scale. 5 epochs is the micro protocol as stored (fp32); 10 and 20 run in bf16 autocast, which left
# the default cell inside its seed spread on every probe (docs/results/ablation_protocol.md, "bf16 against
# fp32"). Each effect below is a difference of two rows of one scale, so precision never crosses a difference.
# 100 epochs run only where a GPU is lent (docs/performance.md, "On a GPU"): no step of the order below runs
# them on a CPU; their column reads what the GPU runs have merged into docs/results.
schedules = {5: 'micro', 10: 'micro_bf16_10ep', 20: 'micro_bf16_20ep', 100: 'micro_bf16_device_100ep'}
# The default cell (MAE, decoder 2 x 96, random 75%, normalized pixels, random-size crop) at this many seeds at
# every schedule: the spread every effect is judged against.
spread_seeds = 4
# Seeds of every other decisive row, per schedule (5 epochs: the micro tables' 2).
row_seeds = {5: 2, 10: 1, 20: 2}
# The decisive rows: axis -> values (the default's value shares its cell).
rows = dict(
    decoder_depth=['1', '2', '8'],
    augmentation=['none', 'rand_crop'],
    mask_ratio=['0.1', '0.4', '0.75', '0.9'],
    mask_sampling=['random75', 'block50'],
    target=['pixel', 'norm_pixel'],
    method=['scratch', 'mae', 'cae', 'beit'],
    cae_align_weight=['0', '2'],
)
# Fine-tuning of the method axis at 20 epochs, one seed (the ft column; the recipe of
# configs/eval/finetune_micro.py, calibrated on the 20-epoch default cell before the other methods were
# fine-tuned). About 72 CPU-minutes a cell where the CPU has bf16 units, 3.3 hours where it has not.
finetune = dict(axis='method', values=['scratch', 'mae', 'cae', 'beit'], seeds=1)
# What runs first: the spread at every schedule, then every row's first seed at 20 epochs and the method
# axis's fine-tuning there, then the second seed at 20 (a row's own spread: until then its verdict leans on
# the default cell's), then the rows at 10. (schedule, seeds: 'spread', 'rows', 'finetune' or a number)
# The step that first pretrains a cell of the 'finetune' step fine-tunes it in the same job (a work dir does
# not outlive its machine, and a cell whose work dir is gone cannot be fine-tuned): the spread step at 20 epochs
# is preceded by the default cell's fine-tuned seed, the first method row step runs with --finetune; the
# 'finetune' step itself then only catches what those did not finish.
order = [(20, 'spread'), (10, 'spread'), (5, 'spread'), (20, 1), (20, 'finetune'), (20, 2), (10, 1)]
# The papers' findings, each a difference of two rows: better - worse is positive where the paper's direction
# shows.
findings = [
    dict(name='decoder depth 8 over 1', axis='decoder_depth', better='8', worse='1'),
    dict(name='random-size crop over no augmentation', axis='augmentation', better='rand_crop', worse='none'),
    dict(name='mask ratio 75% over 10%', axis='mask_ratio', better='0.75', worse='0.1'),
    dict(name='mask ratio 75% over 40%', axis='mask_ratio', better='0.75', worse='0.4'),
    dict(name='mask ratio 75% over 90%', axis='mask_ratio', better='0.75', worse='0.9'),
    dict(name='random 75% over block 50%', axis='mask_sampling', better='random75', worse='block50'),
    dict(name='normalized over raw pixels', axis='target', better='norm_pixel', worse='pixel'),
    dict(name='MAE over scratch', axis='method', better='mae', worse='scratch'),
    dict(name='CAE over BEiT-style', axis='method', better='cae', worse='beit'),
    dict(name='MAE over BEiT-style', axis='method', better='mae', worse='beit'),
    dict(name='CAE alignment (lambda 2 over 0)', axis='cae_align_weight', better='2', worse='0'),
]
# Caveats the report prints under its table: what the numbers cannot say on their own.
notes = [
    "The [cls] rows of the method findings compare unequal tokens: MAE's decoder reads the encoder's [cls] "
    "output, while no loss of CAE (its regressor and alignment target drop [cls]) or of BEiT-style (its token "
    "head reads the patches) ever does. The mean-pooled and attentive probes and fine-tuning read the patch "
    "tokens of every method alike.",
    "The fine-tuning recipe (configs/eval/finetune_micro.py) was chosen among four on the 20-epoch MAE default "
    "cell, seed 0, by its test accuracy (docs/results/finetune_calibration/); that cell is the MAE row of the "
    "ft column. The recipe favours MAE if anything: CAE and BEiT-style were not tuned for.",
    "The 100-epoch cells take their batches on the device data path (whole-batch crops resampled on the GPU, "
    "not rounded to uint8), the CPU schedules per-image crops: each effect is a difference of two rows of one "
    "schedule, but a change between 20 and 100 epochs mixes the length with the data path.",
    "Cells whose records say host.bf16_units false (or name such a host in pretrain.hosts, a resumed "
    "pretraining's machines) ran, in whole or in part, on a CPU without bf16 units, their bf16 products as "
    "float32 products of the bf16 operands rounded to bf16 (Float32Products): a bf16 unit's arithmetic in "
    "another summation order, kept in the same cells (docs/results/ablation_protocol.md, 2026-12-07); the "
    "Schedules table counts them. None had finished when the rule was set.",
    "The scratch row is MAE's architecture at its initialization; CAE's and BEiT-style's encoders add LayerScale "
    "(2,681,472 parameters against 2,679,168), so 'over scratch' is an equal-architecture comparison for MAE "
    "alone.",
]
# An effect "shows" at a schedule when its confidence interval at this level excludes zero: +- t x the standard
# error of the difference, each row's variance its own with 3 or more seeds (the default cell) and else pooled over
# the rows with two seeds, and t the two-sided Student critical value for the difference's Welch-Satterthwaite
# degrees of freedom (the spreads rest on few seeds).
confidence = 0.95
