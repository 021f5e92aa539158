"""The training engine: the trainer and its hooks, checkpoints, DDP helpers, optimizers, the
weight EMA, batch-norm statistics and losses (evaluation is :mod:`eseg.evaluation`)."""
