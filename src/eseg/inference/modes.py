"""Inference modes and their defaults (torch-free, for the command line's help)."""

MODES = ("whole", "slide", "tta")
DEFAULT_TTA_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
