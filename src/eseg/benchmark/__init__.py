"""Side-by-side speed benchmark of eseg models and peers, in one process and one interleaved run.

:mod:`.run` measures (``run_benchmark``), :mod:`.models` builds the models, :mod:`.backends`
prepares each runtime, :mod:`.timing` and :mod:`.memory` measure, :mod:`.report` writes the
tables and the plot. The peers' names live in :mod:`.peers` (torch-free).
"""
