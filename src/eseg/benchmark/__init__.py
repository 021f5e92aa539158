"""Side-by-side speed benchmark of eseg models and peers, in one process and one interleaved run.

:mod:`.run` measures (``run_benchmark``), :mod:`.models` builds the models, :mod:`.prepare`
prepares each variant through eseg's runners, :mod:`.timing` and :mod:`.memory` measure,
:mod:`.report` writes the tables and the plot. The peers' names live in :mod:`.peers`, the
variants (eager, channels_last, compile, onnxruntime, openvino) in :mod:`.variants` (both torch-free).
"""
