import os
import tempfile

import pytest
import torch

# The mask-value cache (eseg.data.scan) goes to a throwaway folder, not the user's ~/.cache.
os.environ.setdefault("ESEG_CACHE_DIR", tempfile.mkdtemp(prefix="eseg-test-cache-"))

# Two xdist workers on two cores: one thread each keeps them from fighting.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


TINY = dict(backbone="test_efficientnet", fpn_width=16, fpn_repeats=2, head_width=16, head_layers=1)


def tiny_model(num_classes: int = 4, **overrides):
    """A full P2-P9 ESeg with timm's 80k-parameter test backbone: fast enough for any test."""
    import eseg

    return eseg.create_model("eseg_lite_s", num_classes=num_classes, **{**TINY, **overrides})


@pytest.fixture
def tiny():
    return tiny_model
