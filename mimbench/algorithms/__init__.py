"""Pretraining algorithms: each wires registered parts into a loss, readable top to bottom in one file."""
from mimbench.algorithms.base import BaseAlgorithm, NonFiniteLossError, NonFiniteWeightsError
from mimbench.algorithms.beit import BEiT
from mimbench.algorithms.cae import CAE
from mimbench.algorithms.mae import MAE
from mimbench.algorithms.preprocessor import ImagePreprocessor
from mimbench.algorithms.tokenizer import TokenizerTraining

__all__ = ['BEiT', 'BaseAlgorithm', 'CAE', 'ImagePreprocessor', 'MAE', 'NonFiniteLossError',
           'NonFiniteWeightsError', 'TokenizerTraining']
