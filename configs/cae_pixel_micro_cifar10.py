# Cross-combination: the micro CAE regressing raw RGB pixels (MSE) instead of tokens, as in the paper's alignment
# experiment; needs no tokenizer. Everything else, including drop path 0.1 in the encoder, regressor and decoder
# and the teacher in train mode (the authors' choices), comes from cae_micro_cifar10.py. tools/cae_alignment.py
# works on checkpoints of this config.
_base_ = ['cae_micro_cifar10.py']

model = dict(target=dict(_delete_=True, type='PixelTarget', normalize=False))
