"""Which data a model was validated on, as its training run recorded it."""
from __future__ import annotations

from pathlib import Path


def recorded_validation_data(model_path: str | Path) -> tuple[dict, str] | None:
    """(dataset spec, split) that the training run holding ``model_path`` validated on, read
    from the run's config.yaml; None for a model outside a run folder."""
    from ..config import load_config
    from ..paths import RUN_CONFIG, run_dir_of_model

    run_dir = run_dir_of_model(Path(model_path).resolve())
    if run_dir is None:
        return None
    cfg = load_config(run_dir / RUN_CONFIG)
    return dict(cfg.data.val_dataset or cfg.data.dataset), cfg.data.val_split
