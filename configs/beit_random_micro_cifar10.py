# Cross-combination: the micro BEiT-style model with MAE's uniform random masking at the same 40%.
_base_ = ['beit_micro_cifar10.py']

model = dict(masker=dict(_delete_=True, type='RandomMasker', ratio=0.4))
