"""Evaluation (detectron2's ``evaluation/``): a Segmenter over a dataset, feeding evaluators.

``inference_on_dataset(segmenter, dataset, evaluators)`` runs the segmenter on every item and
hands each prediction to every :class:`DatasetEvaluator` (``reset`` / ``process`` /
``evaluate``); the results are merged into one dict. :func:`evaluate_model` is the one
evaluation path (trainer, export's int8 check, scripts). Evaluators:

- :class:`SemSegEvaluator`: the confusion matrix and every metric of :mod:`eseg.metrics`
  (summed over DDP ranks when asked);
- :class:`CityscapesExporter`: full-resolution labelIds PNGs for the official evaluator;
- :class:`PanelWriter`: captioned image | ground truth | prediction panels with a legend.

:func:`inference_context` is the one evaluation context (eval mode inside, every module's mode
restored after); :mod:`~eseg.evaluation.reports` holds what ``eseg val`` prints and writes.
"""
from .cityscapes_evaluation import CityscapesExporter
from .context import inference_context, preserved_modes
from .evaluator import DatasetEvaluator, collate_list, eval_loader, inference_on_dataset
from .panels import PanelWriter
from .reports import RESULTS_FILE, format_table, write_report
from .sem_seg_evaluation import SemSegEvaluator, evaluate_model
from .validation_data import recorded_validation_data

__all__ = ["CityscapesExporter", "DatasetEvaluator", "PanelWriter", "RESULTS_FILE", "SemSegEvaluator", "collate_list",
           "eval_loader", "evaluate_model", "format_table", "inference_context", "inference_on_dataset",
           "preserved_modes", "recorded_validation_data", "write_report"]
