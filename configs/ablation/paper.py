# The paper-scale ablation protocol (MAE's: ViT-L/16 on ImageNet-1K, 800 epochs, batch 4096): for a GPU
# cluster (`--launcher slurm`), not for a CPU. Pass --data-root to an ImageNet folder (train/, val/).
scale = 'paper'
description = 'ViT-L/16 on ImageNet-1K at 224 px'
paper = 'ViT-L/16 on ImageNet-1K, 800 pretraining epochs'
methods = dict(
    mae='configs/mae_vitl.py',
    cae='configs/cae_vitb.py',
    beit='configs/beit_vitb.py',
)
# CAE and BEiT ship ViT-B recipes; the method axis runs them with the ViT-L encoder like MAE's.
method_options = dict(cae={'model.encoder.arch': 'large', 'model.regressor.num_heads': 16,
                           'model.decoder.num_heads': 16},
                      beit={'model.encoder.arch': 'large'})
# Each cell trains on 8 GPUs under torchrun (one slurm job per cell): 8 x 512 = the paper's batch of 4096.
gpus_per_cell = 8
pretrain_options = {'train_cfg.max_epochs': 800, 'train_dataloader.batch_size': 512}
amp = True
num_train_images = 1281167
num_test_images = 50000
evaluations = dict(
    lin=dict(protocol='linear', config='configs/eval/linear_vitb.py'),
    knn=dict(protocol='knn', config='configs/eval/knn_vitb.py'),
    ft=dict(protocol='finetune', config='configs/eval/finetune_vitb.py', options=dict(layer_decay=0.75)),
)
# No attentive probe at this scale: its cached tokens would be ~0.5 TB for ImageNet (docs/evaluation.md).
default_evaluations = ['lin', 'knn']
seeds = 1
# A100-class GPU: 312 TFLOP/s bf16 peak, 40% of it sustained.
device_tflops = 125
efficiency = 1.0
probe_seconds = dict(lin=3600, knn=600)
test_fraction = 0.039  # 50,000 val images per 1.28 M training images
