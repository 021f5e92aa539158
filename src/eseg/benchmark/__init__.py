"""Side-by-side speed benchmark of eseg models and peers, in one process and one interleaved run.

:mod:`.run` measures (``run_benchmark``), :mod:`.models` builds the models, :mod:`.prepare`
prepares each variant through eseg's runners, :mod:`.timing` and :mod:`.memory` measure,
:mod:`.report` writes the tables and the plot. The peers' names live in :mod:`.peers`, the
variants (eager, channels_last, compile, onnxruntime, openvino) in :mod:`.variants` (both torch-free).
``--end-to-end`` (:mod:`.end_to_end`) times image file to mask file through eseg predict's pipeline, with
its graphs in :mod:`.graphs`, the fit of untrained models in :mod:`.fit` and its tables in
:mod:`.end_to_end_report`.
"""
