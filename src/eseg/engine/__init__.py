"""The training engine: the trainer and its hooks, checkpoints, DDP helpers, optimizers, losses
and the evaluation API."""
