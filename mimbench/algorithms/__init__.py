"""Pretraining algorithms: each wires registered parts into a loss, readable top to bottom in one file."""
from mimbench.algorithms.base import BaseAlgorithm, NonFiniteLossError
from mimbench.algorithms.mae import MAE
from mimbench.algorithms.preprocessor import ImagePreprocessor

__all__ = ['BaseAlgorithm', 'ImagePreprocessor', 'MAE', 'NonFiniteLossError']
