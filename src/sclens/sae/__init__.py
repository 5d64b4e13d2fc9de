"""Sparse autoencoder core in pure torch (no AnnData): config, architectures, model, training, io.

>>> from sclens.sae import SAEConfig, SparseAutoencoder, train_sae
>>> sae = SparseAutoencoder(SAEConfig(input_dim=16, n_features=256, architecture="topk", k=8), seed=0)
>>> history = train_sae(sae, x, n_epochs=20, lr=1e-3)  # x: numpy / sparse / dask / backed / tensors
"""

from ._config import SAEConfig
from ._data import ArrayBatches, data_stats, geometric_median
from ._io import check_input_dim, from_arrays, load_sae, save_sae, to_arrays
from ._model import SAEOutput, SparseAutoencoder
from ._registry import Architecture, available_architectures, get_architecture, register_architecture
from ._train import EvalResult, evaluate, initialize_from_data, torch_threads, train_sae

__all__ = [
    "Architecture",
    "ArrayBatches",
    "EvalResult",
    "SAEConfig",
    "SAEOutput",
    "SparseAutoencoder",
    "available_architectures",
    "check_input_dim",
    "data_stats",
    "evaluate",
    "from_arrays",
    "geometric_median",
    "get_architecture",
    "initialize_from_data",
    "load_sae",
    "register_architecture",
    "save_sae",
    "to_arrays",
    "torch_threads",
    "train_sae",
]
