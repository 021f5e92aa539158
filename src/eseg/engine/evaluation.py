"""Deprecated home of the evaluation API, now :mod:`eseg.evaluation`; this path keeps working for
one release and warns when imported."""
import warnings

from ..evaluation import (  # noqa: F401  (re-exported)
    CityscapesExporter,
    DatasetEvaluator,
    PanelWriter,
    SemSegEvaluator,
    collate_list,
    eval_loader,
    evaluate_model,
    inference_on_dataset,
    recorded_validation_data,
)

warnings.warn("eseg.engine.evaluation has moved to eseg.evaluation; import from there (the old path goes in the "
              "next release)", DeprecationWarning, stacklevel=2)
