# CIFAR-10 at 32 px for the micro protocol. The dataset finds either the official python format
# (cifar-10-batches-py/) or an ImageFolder of JPEGs (train/<class>/*.jpg) under `root`; elsewhere it tries to
# download and, offline, says to pass --data-root. The default is where this project's machines keep a copy.
data_root = '../shared/data/cifar10'
cifar10_mean = (0.4914, 0.4822, 0.4465)
cifar10_std = (0.2470, 0.2435, 0.2616)

train_dataloader = dict(
    batch_size=256,
    # The whole split is decoded once into memory, so augmenting in the main process costs less than
    # shipping batches from worker processes on a 2-core machine.
    num_workers=0,
    drop_last=True,
    sampler=dict(type='ResumableSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='CIFAR10',
        root=data_root,
        split='train',
        pipeline=[
            dict(type='RandomResizedCrop', size=32, scale=(0.2, 1.0)),
            dict(type='RandomHorizontalFlip'),
        ]),
)
data_preprocessor = dict(type='ImagePreprocessor', mean=cifar10_mean, std=cifar10_std)
