# Cross-combination: the micro MAE regressing each patch's first 16 principal components (of 48 values). The basis
# is fitted once, before training, on one seeded training batch (tools/train.py and tools/ablate.py do it), and
# never replaced: every later run with this file reads the same basis, and its content is part of a cell's identity.
_base_ = ['mae_micro_cifar10.py']

model = dict(target=dict(_delete_=True, type='PCATarget', num_components=16,
                         basis_file='work_dirs/pca_basis_cifar10_p4.pth'))
