# ImageNet-1K in ImageFolder layout (root/train/<wnid>/*.JPEG), decoded per image in worker processes.
# Pass the location with --data-root.
data_root = 'data/imagenet'

train_dataloader = dict(
    batch_size=128,  # per GPU; 32 GPUs x 128 = the papers' 4096
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='ResumableSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='ImageFolder',
        root=data_root,
        split='train',
        pipeline=[
            dict(type='RandomResizedCrop', size=224, scale=(0.2, 1.0)),
            dict(type='RandomHorizontalFlip'),
        ]),
)
data_preprocessor = dict(type='ImagePreprocessor')  # ImageNet mean/std
