"""Deprecated home of ``eseg val``'s reports, now :mod:`eseg.evaluation.reports`; this path keeps
working for one release and warns when imported."""
import warnings

from ..evaluation.reports import RESULTS_FILE, format_table, write_report  # noqa: F401  (re-exported)
from ..paths import CONFUSION_MATRIX as CONFUSION_FILE  # noqa: F401
from ..paths import PER_CLASS_IOU as IOU_CHART_FILE  # noqa: F401

warnings.warn("eseg.engine.reports has moved to eseg.evaluation.reports; import from there (the old path goes in "
              "the next release)", DeprecationWarning, stacklevel=2)
