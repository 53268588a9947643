# MAE's fine-tuning recipe, the part every scale keeps: AdamW (0.9, 0.999), weight decay 0.05, base lr 5e-4 per
# 256 images, drop path 0.1, RandAugment m9 (2 ops), random erasing 0.25, mixup 0.8 / cutmix 1.0 with label
# smoothing 0.1, global average pooling, no gradient clipping, bfloat16 autocast (MAE used float16 AMP).
# A scale's config adds its data, length, batch, layer decay and crop size.
protocol = 'finetune'
# The authors' global pool (MAE, BEiT and CAE alike): the last block's patch tokens averaged without the
# encoder's final norm, then a LayerNorm, fresh as MAE and BEiT start it (CAE copies the pretrained final norm
# into it). 'mean' averages after the final norm (mimbench.evaluation.finetune.Classifier).
pool = 'mean_pre_norm'
base_lr = 5e-4
weight_decay = 0.05
betas = (0.9, 0.999)
drop_path = 0.1
label_smoothing = 0.1
mixup = 0.8
cutmix = 1.0
mixup_prob = 1.0
mixup_switch_prob = 0.5
rand_augment = dict(num_ops=2, magnitude=9)
random_erasing = 0.25
clip_grad = None
amp = True
