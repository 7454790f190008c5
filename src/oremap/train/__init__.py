"""Training loop for the networks of :mod:`oremap.models` on plain arrays of patches.

He et al. (2024) train every network with Adam (lr 1e-4 cosine-annealed to 1e-5), batch 16,
for 50 epochs; :class:`TrainSettings` holds these defaults. Every epoch writes
``out_dir/<name>/last.pt`` (everything needed to resume bit-for-bit), ``best.pt`` (the
weights of the epoch with the lowest test loss, or training loss without a test set) and
``history.csv`` (one row per epoch), all atomically (a temporary file, then :func:`os.replace`).

Determinism: the weights are initialised after ``torch.manual_seed(seed)``; the order of the
samples in epoch ``e`` and the dropout masks are drawn from seeds derived from ``(seed, e)``
(:class:`numpy.random.SeedSequence`), so a resumed run sees exactly the data of an
uninterrupted one. On CPU deterministic algorithms are switched on during training, and two
runs with the same seed and thread count give identical weights. On CUDA, mixed precision
and cuDNN make runs close but not bit-identical.

Data loading: ``X`` may be a :class:`numpy.memmap`; batches are read by index, never the
whole array. Rule for ``TrainSettings.workers``: in-memory arrays are batched in the main
process (a worker would only add pickling overhead); a memmap of at least
:data:`MEMMAP_WORKER_MIN_BYTES` uses ``min(workers, available_cores())`` forked DataLoader
workers that read their batches from the mapped file (0 workers where fork is unavailable).

Pretraining (:mod:`oremap.train.pretrain`): :func:`pretrain_model` trains a network's trunk on
crops without labels (masked reconstruction or SimCLR) into a file that ``train_model(...,
pretrained=path)`` starts the fine-tuning from.
"""

from oremap.device import choose_device
from oremap.limits import available_cores as available_cores
from oremap.train.checkpoints import (
    CHECKPOINT_FORMAT,
    HISTORY_COLUMNS,
    load_pretrained,
    load_trained,
    trunk_digest,
)
from oremap.train.checkpoints import _write_history as _write_history
from oremap.train.data import (
    MEMMAP_WORKER_MIN_BYTES,
    class_weights,
    data_digest,
    dihedral,
    dihedral_batch,
    epoch_order,
)
from oremap.train.data import _loader_workers as _loader_workers
from oremap.train.data import _split_batches as _split_batches
from oremap.train.figures import plot_loss_curves
from oremap.train.inference import (
    CHANNELS_LAST_CLASSES,
    EVAL_BATCH,
    inference_model,
    predict_proba,
)
from oremap.train.loop import _Run as _Run
from oremap.train.loop import train_model
from oremap.train.parallel import _MappedArray as _MappedArray
from oremap.train.parallel import _portable as _portable
from oremap.train.parallel import train_models
from oremap.train.pretrain import (
    PRETRAIN_DIR,
    PretrainResult,
    area_scaling,
    find_head,
    pretrain_model,
    pretrain_path,
    pretraining_indices,
)
from oremap.train.settings import TrainResult, TrainSettings
from oremap.train.settings import _check_settings as _check_settings

__all__ = [
    "CHANNELS_LAST_CLASSES",
    "CHECKPOINT_FORMAT",
    "EVAL_BATCH",
    "HISTORY_COLUMNS",
    "MEMMAP_WORKER_MIN_BYTES",
    "PRETRAIN_DIR",
    "PretrainResult",
    "TrainResult",
    "TrainSettings",
    "area_scaling",
    "choose_device",
    "class_weights",
    "data_digest",
    "dihedral",
    "dihedral_batch",
    "epoch_order",
    "find_head",
    "inference_model",
    "load_pretrained",
    "load_trained",
    "plot_loss_curves",
    "predict_proba",
    "pretrain_model",
    "pretrain_path",
    "pretraining_indices",
    "train_model",
    "train_models",
    "trunk_digest",
]
