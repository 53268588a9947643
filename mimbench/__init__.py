"""mimbench: masked image modeling from interchangeable, registered parts.

Importing the package registers every component, so configs can name them by ``type``.
"""
from mimbench import algorithms, data, engine, masking, models, targets  # noqa: F401
from mimbench.registry import (DATASETS, ENCODERS, HEADS, HOOKS, MASKERS, MODELS, TARGETS,  # noqa: F401
                               TRANSFORMS)

__version__ = '0.1.0'
