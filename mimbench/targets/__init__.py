"""Reconstruction targets: what the model predicts for each removed patch, and the loss against it."""
from mimbench.targets.pixel import PixelTarget, masked_mean

__all__ = ['PixelTarget', 'masked_mean']
