# MAE ViT-L/16 on ImageNet-1K: the ViT-B recipe with the large encoder (the paper's ablation model).
_base_ = ['mae_vitb.py']

model = dict(encoder=dict(arch='large'))
