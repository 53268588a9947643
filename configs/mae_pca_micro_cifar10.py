# Cross-combination: the micro MAE regressing each patch's first 16 principal components (of 48 values). The basis
# is fitted on the first training batch and kept in work_dirs/ for every later run with the same patch size.
_base_ = ['mae_micro_cifar10.py']

model = dict(target=dict(_delete_=True, type='PCATarget', num_components=16,
                         basis_file='work_dirs/pca_basis_cifar10_p4.pth'))
