"""Sparse autoencoder core in pure torch (no AnnData): config, architectures, model, training, io.

>>> from sclens.sae import SAEConfig, SparseAutoencoder, train_sae
>>> sae = SparseAutoencoder(SAEConfig(input_dim=16, n_features=256, architecture="topk", k=8), seed=0)
>>> history = train_sae(sae, x)  # until held-out loss stops improving; numpy / sparse / dask / backed / tensors
"""

from ._architectures import BatchTopKConfig, JumpReLUConfig, MatryoshkaBatchTopKConfig  # registers them too
from ._config import SAEConfig
from ._data import ArrayBatches, TensorBatches, data_stats, geometric_median
from ._evaluate import EvalResult, evaluate
from ._io import check_input_dim, from_arrays, load_sae, save_sae, to_arrays
from ._model import SAEOutput, SparseAutoencoder
from ._registry import (
    Architecture,
    ArchitectureConfig,
    ReLUConfig,
    TopKConfig,
    VanillaConfig,
    available_architectures,
    get_architecture,
    register_architecture,
)
from ._schedule import Stopping, default_lr
from ._train import global_rank, initialize_from_data, torch_threads, train_sae

__all__ = [
    "Architecture",
    "ArchitectureConfig",
    "ArrayBatches",
    "BatchTopKConfig",
    "EvalResult",
    "JumpReLUConfig",
    "MatryoshkaBatchTopKConfig",
    "ReLUConfig",
    "SAEConfig",
    "SAEOutput",
    "SparseAutoencoder",
    "Stopping",
    "TensorBatches",
    "TopKConfig",
    "VanillaConfig",
    "available_architectures",
    "check_input_dim",
    "data_stats",
    "default_lr",
    "evaluate",
    "from_arrays",
    "geometric_median",
    "get_architecture",
    "global_rank",
    "initialize_from_data",
    "load_sae",
    "register_architecture",
    "save_sae",
    "to_arrays",
    "torch_threads",
    "train_sae",
]
