"""Reconstruction targets: what the model predicts for each removed patch, and the loss against it."""
from mimbench.targets.base import Target, masked_mean
from mimbench.targets.pca import PCATarget, fit_pca
from mimbench.targets.pixel import PixelTarget
from mimbench.targets.token import TokenTarget, load_tokenizer, save_tokenizer

__all__ = ['PCATarget', 'PixelTarget', 'Target', 'TokenTarget', 'fit_pca', 'load_tokenizer', 'masked_mean',
           'save_tokenizer']
