"""The model table: configuration and costs of every registered model.

Costs (params, GMACs at the eval size and at 1024x2048) come from the table kept in the
registry, so listing is instant and torch-free; ``recount=True`` measures them with
``torch.utils.flop_counter`` (a test keeps the two in step).
"""
from __future__ import annotations

from .. import fileio
from ..errors import ConfigError
from ..sizes import format_size
from ..tables import markdown_table as _markdown
from .registry import MODELS, get_config, list_models

REFERENCE_SIZE = (1024, 2048)
TABLE_START = "<!-- eseg-models-table:start -->"
TABLE_END = "<!-- eseg-models-table:end -->"
FOOTNOTE = ("Variant configurations are eseg's own design (the paper publishes none); `deeplabv3plus` (atrous) "
            "and `lraspp` (torchvision's LR-ASPP decoder) are baselines, not ESeg. GMACs are counted with torch.utils.flop_counter for 19 classes.")
HEADERS = {
    "model": "model", "family": "family", "backbone": "backbone", "design": "levels / W / D / head",
    "params_M": "params (M)", "eval_size": "eval H x W", "gmacs_eval": "GMACs @ eval",
    "gmacs_1024x2048": "GMACs @ 1024x2048", "train_crop": "train crop",
}


def measure_costs(name: str, num_classes: int = 19) -> tuple[float, float, float]:
    """(params M, GMACs at eval size, GMACs at 1024x2048) of a registered model, counted now."""
    import torch

    from ..flops import count_macs, count_params
    from .registry import create_model

    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes).eval()
    eval_size = get_config(name).eval_size
    return (round(count_params(model) / 1e6, 2), round(count_macs(model, eval_size) / 1e9, 2),
            round(count_macs(model, REFERENCE_SIZE) / 1e9, 2))


def design(config) -> str:
    """The architecture's one-line summary (each config class says its own)."""
    return config.design()


def model_rows(names: list[str] | None = None, *, recount: bool = False) -> list[dict]:
    rows = []
    for name in list_models() if names is None else names:
        config, meta = get_config(name), MODELS.metadata(name)
        costs = measure_costs(name) if recount or meta["costs"] is None else meta["costs"]
        rows.append({
            "model": name, "family": meta["family"], "backbone": config.backbone, "design": design(config),
            "params_M": costs[0], "eval_size": format_size(config.eval_size), "gmacs_eval": costs[1],
            "gmacs_1024x2048": costs[2], "train_crop": format_size(config.train_crop),
        })
    return rows


def markdown_table(rows: list[dict]) -> str:
    return _markdown(list(HEADERS.values()), [[row[key] for key in HEADERS] for row in rows])


def update_document(path, table: str) -> None:
    """Replace the text between the table markers in ``path`` with ``table`` and the footnote."""
    text = path.read_text(encoding="utf-8")
    if TABLE_START not in text or TABLE_END not in text:
        raise ConfigError(f"'{path}' has no '{TABLE_START}' ... '{TABLE_END}' markers to put the table between")
    head, rest = text.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    fileio.write_text(path, f"{head}{TABLE_START}\n{table}\n\n{FOOTNOTE}\n{TABLE_END}{tail}")
