"""Many inputs to masks with decoding, the network and writing overlapped.

Three stages, each keeping the input order:

- **decode**: a thread pool reads, decodes and normalises inputs ahead of the network (PIL's
  decoders and torch's arithmetic release the GIL), at most ``depth`` inputs ahead;
- **network**: in the calling thread, ``segmenter.batch_size`` inputs at a time (OpenVINO, ONNX
  Runtime and torch release the GIL while they run); each batch's masks are read from its
  logits (the exact low-resolution argmax) on a mask thread while the next batch runs;
- **write**: :class:`OrderedJobs` runs encode-and-write jobs on a thread pool (zlib and libjpeg
  release the GIL), at most ``depth`` jobs pending, and reports each job's outcome in the order
  the jobs were given.

Memory stays flat over any number of inputs: at most ``depth`` decoded inputs (and the two
batches at the network and the mask thread) and ``depth`` pending writes exist at a time. One bad input is one :class:`Prediction` with its ``error``; the
others go on. :func:`stream` is what ``eseg predict``, video prediction and ``Segmenter.stream``
run; ``eseg val`` overlaps its decoding through the data loader's workers and its evaluators
through a :class:`OrderedJobs` (:func:`eseg.evaluation.inference_on_dataset`).
"""
from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.io import as_rgb
from ..data.transforms import normalize
from ..errors import DataError

INPUT_ERRORS = (DataError, OSError)  # what makes one input fail without stopping the others
_END = object()


def default_workers() -> int:
    """Decode / write threads: two, or one on a single core."""
    return max(1, min(2, os.cpu_count() or 1))


@dataclass
class Prediction:
    """One input's result: ``mask`` (and ``logits`` when asked for), or the ``error`` that stopped it."""

    index: int
    source: Any
    image: np.ndarray | None = None  # the decoded uint8 RGB input
    mask: np.ndarray | None = None
    logits: Any = None  # (C, H, W) full-resolution logits, only with ``logits=True``
    error: BaseException | None = None


@dataclass
class _Decoded:
    index: int
    source: Any
    image: np.ndarray | None = None
    tensor: Any = None
    error: BaseException | None = None


def read_ahead(items: Iterable, depth: int) -> Iterator:
    """``items`` pulled by a background thread, at most ``depth`` ahead of the consumer (a video
    decoder runs beside the network). An exception of the source is raised where it occurred."""
    iterator = iter(items)
    with ThreadPoolExecutor(1, thread_name_prefix="eseg-read") as pool:
        window: collections.deque[Future] = collections.deque()
        try:
            while True:
                while len(window) < depth:
                    window.append(pool.submit(next, iterator, _END))
                item = window.popleft().result()
                if item is _END:
                    return
                yield item
        finally:
            for future in window:
                future.cancel()


def ordered_map(fn: Callable, items: Iterable, pool: ThreadPoolExecutor, depth: int) -> Iterator[Future]:
    """Futures of ``fn(item)`` in the order of ``items``, at most ``depth`` submitted ahead."""
    window: collections.deque[Future] = collections.deque()
    try:
        for item in items:
            window.append(pool.submit(fn, item))
            if len(window) >= depth:
                yield window.popleft()
        while window:
            yield window.popleft()
    finally:
        for future in window:
            future.cancel()


def batches(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Decoder:
    """Decodes and normalises one (index, source) for ``segmenter`` on a pool thread."""

    def __init__(self, segmenter, decode: Callable[[Any], np.ndarray]) -> None:
        self.mean, self.std = segmenter.info.mean, segmenter.info.std
        self.decode = decode

    def __call__(self, indexed: tuple[int, Any]) -> _Decoded:
        index, source = indexed
        try:
            image = self.decode(source)
            return _Decoded(index, source, image, normalize(image, self.mean, self.std))
        except INPUT_ERRORS as exc:
            return _Decoded(index, source, error=exc)


def stream(segmenter, inputs: Iterable, *, decode: Callable[[Any], np.ndarray] = as_rgb, logits: bool = False,
           workers: int | None = None, depth: int | None = None) -> Iterator[Prediction]:
    """A :class:`Prediction` for every input, in order: ``decode(input)`` (uint8 RGB; default:
    a path, PIL image or array through :func:`eseg.data.io.as_rgb`) on ``workers`` threads,
    ``depth`` inputs ahead (default: two batches and one per worker); the network in this
    thread, each batch's masks read on another while the next batch runs. ``logits=True`` also
    returns each input's full-resolution logits and takes the mask from them (their argmax, as
    :meth:`Segmenter.to_mask` gives it)."""
    workers = workers or default_workers()
    depth = depth or 2 * segmenter.batch_size + workers
    with ThreadPoolExecutor(workers, thread_name_prefix="eseg-decode") as pool, \
            ThreadPoolExecutor(1, thread_name_prefix="eseg-mask") as mask_pool:
        futures = ordered_map(_Decoder(segmenter, decode), enumerate(inputs), pool, depth)
        try:
            previous: _Batch | None = None
            for batch in batches((future.result() for future in futures), segmenter.batch_size):
                started = _Batch(batch, mask_pool.submit(_network(segmenter, batch, logits)))
                if previous is not None:
                    yield from previous.predictions()
                previous = started
            if previous is not None:
                yield from previous.predictions()
        finally:
            futures.close()  # a consumer that stops early leaves no decoding queued


@dataclass
class _Batch:
    """Decoded inputs whose network ran; ``outputs`` gives {index: (mask, logits)} when the masks are read."""

    items: list[_Decoded]
    outputs: Future

    def predictions(self) -> Iterator[Prediction]:
        outputs = self.outputs.result()
        for item in self.items:
            if item.error is not None:
                yield Prediction(item.index, item.source, error=item.error)
            else:
                mask, full = outputs[item.index]
                yield Prediction(item.index, item.source, item.image, mask, full)


def _network(segmenter, batch: list[_Decoded], with_logits: bool) -> Callable[[], dict]:
    """Runs the network on ``batch``'s good inputs now; returns what reads their masks (on the mask thread)."""
    good = [item for item in batch if item.error is None]
    tensors = [item.tensor for item in good]
    if not tensors:
        return dict
    if with_logits:
        with torch.inference_mode():
            full = segmenter.logits_from_tensors(tensors)
        return lambda: {item.index: (segmenter.to_mask(out), out) for item, out in zip(good, full)}
    read = masks_later(segmenter, tensors)
    return lambda: {item.index: (mask, None) for item, mask in zip(good, read())}


def masks_later(segmenter, tensors: list[torch.Tensor]) -> Callable[[], list[np.ndarray]]:
    """Runs the network on normalized ``tensors`` now and returns what reads their masks, in
    order: the mask step (the exact low-resolution argmax) left for another thread, so it overlaps
    the next network call (``eseg predict`` and ``eseg val`` alike). Several passes (TTA,
    windows) take their masks from the averaged full-resolution logits at once."""
    with torch.inference_mode():
        if not segmenter.single_pass:
            masks = segmenter.masks_from_tensors(tensors)
            return lambda: masks
        calls = [(call, segmenter.run_network(call)) for call in segmenter.mask_batches(tensors)]

    def read_masks() -> list[np.ndarray]:
        masks: list = [None] * len(tensors)
        with torch.inference_mode():
            for call, raw in calls:
                for index, mask in zip(call.indices, segmenter.batch_masks(call, raw)):
                    masks[index] = mask
        return masks

    return read_masks


def stop_at_error(_key: Any, error: BaseException | None) -> None:
    """An :class:`OrderedJobs` ``done`` for jobs that share one fate (a video's frames, evaluators):
    the first failed job's error stops them all."""
    if error is not None:
        raise error


class OrderedJobs:
    """Jobs on a thread pool, at most ``depth`` pending; ``done(key, error)`` is called in this
    thread, in the order the jobs were submitted, with the job's exception (an
    :data:`INPUT_ERRORS` one) or None. Other exceptions propagate. One worker runs the jobs one
    after another in order (a video's frames)."""

    def __init__(self, done: Callable[[Any, BaseException | None], None], *, workers: int | None = None,
                 depth: int | None = None) -> None:
        self.workers = workers or default_workers()
        self.depth = depth or 2 * self.workers
        self.done = done
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="eseg-write")
        self.pending: collections.deque[tuple[Any, Future]] = collections.deque()

    def submit(self, key: Any, job: Callable, *args: Any) -> None:
        while len(self.pending) >= self.depth:
            self._settle_oldest()
        self.pending.append((key, self.pool.submit(job, *args)))

    def _settle_oldest(self) -> None:
        key, future = self.pending.popleft()
        error = future.exception()
        if error is not None and not isinstance(error, INPUT_ERRORS):
            raise error
        self.done(key, error)

    def drain(self) -> None:
        """Wait for every pending job and report it."""
        while self.pending:
            self._settle_oldest()

    def __enter__(self) -> "OrderedJobs":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.drain()
        finally:
            for _, future in self.pending:
                future.cancel()
            self.pool.shutdown(wait=True)


def stream_masks(segmenter, inputs: Iterable, **options: Any) -> Iterator[np.ndarray]:
    """The masks of ``inputs``, in order, decoding ahead of the network (what
    ``Segmenter.stream`` yields); a bad input raises its DataError where it stands."""
    for prediction in stream(segmenter, inputs, **options):
        if prediction.error is not None:
            raise prediction.error
        yield prediction.mask
