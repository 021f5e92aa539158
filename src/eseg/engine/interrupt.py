"""Stopping a training run on Ctrl-C (SIGINT) or SIGTERM without losing its steps.

While :class:`StopSignals` is active (the trainer's step loop), the first SIGINT or SIGTERM only
asks for a stop: the step in progress finishes, with its hooks (an evaluation, a checkpoint), so
no state is ever half updated. The trainer then saves ``checkpoints/last``, prints the command
that resumes the run and raises :class:`TrainingInterrupted` (a ``KeyboardInterrupt``: ``eseg``
exits with :data:`EXIT_INTERRUPTED`). A second signal raises ``KeyboardInterrupt`` at once, with
no checkpoint. Under torchrun the processes agree on the stop step (the trainer reduces the
request over processes after every step) and rank 0 writes; torchrun forwards one signal to every
rank and kills them 30 s later.
"""
from __future__ import annotations

import os
import shlex
import signal
import threading
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention for a run stopped by Ctrl-C


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal after saving ``checkpoint`` at ``step``; ``resume_command``
    continues it."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path, resume_command: str) -> None:
        super().__init__(f"{signal_name} at step {step}: saved {checkpoint}; resume with: {resume_command}")
        self.signal_name, self.step, self.checkpoint, self.resume_command = signal_name, step, checkpoint, resume_command


class StopSignals:
    """While active (a context manager), the first of ``signals`` records a stop request and a
    second raises ``KeyboardInterrupt``; the previous handlers come back on exit. Outside the
    main thread, where Python cannot install handlers, it records nothing and changes nothing."""

    def __init__(self, signals=STOP_SIGNALS) -> None:
        self.signals = tuple(signals)
        self.received: signal.Signals | None = None
        self._previous: dict = {}
        self._pid = os.getpid()

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                previous = signal.signal(sig, self._handle)
                self._previous[sig] = signal.SIG_DFL if previous is None else previous  # None: set outside Python
        return self

    def __exit__(self, *exc_info) -> None:
        self.restore()

    @property
    def requested(self) -> bool:
        return self.received is not None

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        if os.getpid() != self._pid:  # a forked DataLoader worker: the trainer decides when to stop
            if signum != signal.SIGINT:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return
        if self.received is not None:
            self.restore()
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopped at once, without a checkpoint")
        self.received = signal.Signals(signum)


def ignore_sigint(worker_id: int = 0) -> None:
    """A DataLoader ``worker_init_fn``: Ctrl-C reaches the terminal's whole process group, and a
    worker that died of it would fail the batch the step in progress still waits for; the main
    process decides when to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def resume_command(config: str | Path, run_dir: str | Path, *, nodes: int = 1, processes_per_node: int = 1) -> str:
    """The command line that continues the run in ``run_dir`` (its own recorded config)."""
    launcher = "eseg"
    if nodes * processes_per_node > 1:
        launcher = f"torchrun --nproc_per_node {processes_per_node} -m eseg.cli"
        if nodes > 1:
            launcher = f"torchrun --nnodes {nodes} --nproc_per_node {processes_per_node} RENDEZVOUS_OPTIONS -m eseg.cli"
    return f"{launcher} train {shlex.quote(str(config))} --out {shlex.quote(str(run_dir))} --resume"
