"""Training the U-Net segmentation and upgrade models, from a job bundle to a model bundle.

Four modules, each readable alone: `runtime` (device, torchrun, precision, the optimiser step
the generator trainers share), `loop` (`train_model`: fit, validate, checkpoint, stop early),
`onnx_model` (the exported graph's contract and its outputs as the tablet decodes them) and
`ship` (`train_job`: job bundle in, trained and checked model bundle out). The names below are
the ones `python -m export`, the generators and the benchmarks import from `export.train`.
"""

from export.train.loop import TrainConfig, evaluate, learning_rate, predict, train_model
from export.train.onnx_model import segmentation_contract
from export.train.runtime import optimiser_step
from export.train.ship import split_off_val, train_job

__all__ = [
    "TrainConfig",
    "evaluate",
    "learning_rate",
    "optimiser_step",
    "predict",
    "segmentation_contract",
    "split_off_val",
    "train_job",
    "train_model",
]
