"""Training sets: MPI-parallel, resumable generation (:func:`generate`) into crash-consistent
per-rank HDF5 shards, finalized into one ``trainset.h5`` (:func:`load`)."""

from .generate import GenerateConfig, draw, finalize, generate, load_config
from .store import TrainingSet, load

__all__ = ["GenerateConfig", "generate", "finalize", "load_config", "draw", "load",
           "TrainingSet"]
