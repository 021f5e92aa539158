"""The training engine: ``eseg train`` (train.py), checkpoints, DDP helpers, optimizers and losses."""
from .checkpoint import find_checkpoint, load_train_state, save_checkpoint
from .losses import SegmentationLoss
from .optim import ModelEMA, build_optimizer, build_scheduler

__all__ = ["find_checkpoint", "load_train_state", "save_checkpoint", "SegmentationLoss", "ModelEMA",
           "build_optimizer", "build_scheduler"]
