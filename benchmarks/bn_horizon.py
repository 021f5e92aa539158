"""How the horizon H of the BN bias correction max(m, min(1, H/t)) was chosen (docs/models.md).

    .venv/bin/python benchmarks/bn_horizon.py [--horizons 1 2 3 5 8]

For each H, the 60-step BiFPN run of ``tests/test_norm.py`` (tiny ESeg, BiFPN P2-P9, BN momentum
0.01, batch 4) is trained with that correction, and its eval-mode mIoU with its own running
statistics is printed beside the mIoU after precise BN (10 batches) of the same weights.
About a minute per H on 2 cores.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import eseg.models.norm as norm  # noqa: E402
from eseg.tables import markdown_header, markdown_row  # noqa: E402
from tests.test_norm import _short_bifpn_run  # noqa: E402


def gap_for(horizon: int) -> tuple[float, float]:
    """(running-BN mIoU, precise-BN mIoU) in % with HORIZON = ``horizon``."""
    original = norm.HORIZON
    norm.HORIZON = horizon  # read by effective_momentum at every update
    try:
        with tempfile.TemporaryDirectory() as work:
            running, precise = _short_bifpn_run(Path(work), "run", debias=True)
    finally:
        norm.HORIZON = original
    return 100 * running, 100 * precise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizons", type=int, nargs="+", default=[1, 2, 3, 5, 8])
    args = parser.parse_args()
    print(markdown_header(["H", "running-BN mIoU (%)", "precise-BN mIoU (%)", "gap (points)"]))
    for horizon in args.horizons:  # a row as each horizon is measured
        running, precise = gap_for(horizon)
        print(markdown_row([horizon, f"{running:.1f}", f"{precise:.1f}", f"{running - precise:+.1f}"]), flush=True)


if __name__ == "__main__":
    main()
