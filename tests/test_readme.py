"""Every example of the README runs: each `eseg` command line (through eseg.cli.main), the torchrun
line (as a subprocess) and the Python block, in README order, in a scratch workspace holding the
repository's configs and the files the examples name (street.png, photos/, clip.mp4, a Cityscapes
tree in the official layout; the "your own data" exports are written by the README's own
`eseg data synth --format` lines). Training, benchmark, reproduce and synth runs get tiny sizes
appended, so the whole README runs in a few minutes; what each example does is unchanged."""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eseg.cli import main

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
TINY_TRAIN = ["model.backbone=test_efficientnet", "model.fpn_width=16", "model.head_width=16", "model.fpn_repeats=1",
              "model.pretrained_backbone=false", "data.crop_size=[64,128]", "data.num_workers=0", "data.color_jitter=null",
              "train.batch_size=2", "train.warmup_steps=0", "train.amp=false", "train.sync_bn=false", "train.ema_decay=0",
              "train.log_interval=1", "train.checkpoint_interval=100", "eval.max_images=2", "eval.batch_size=2",
              "eval.interval=0", "eval.num_overlays=1", "eval.num_predictions=1", "run.progress=false"]
TINY_ESEG = ["--set", "backbone=test_efficientnet", "--set", "fpn_width=16", "--set", "head_width=16"]
TINY_BENCH = ["--runs", "1", "--warmup", "0", "--throughput-runs", "1", "--no-memory", "--threads", "1", *TINY_ESEG]
TINY_END_TO_END = ["--runs", "1", "--images", "1", "--threads", "1", "--fit-size", "64x128", *TINY_ESEG]
TINY_SCENES = ["--size", "64x128"]
TINY_CLAIMS = ["--steps", "2", "--val-images", "2", "--latency-runs", "1", "--bn-batches", "1", "--threads", "1",
               "--set", "data.dataset.size=[64,128]", "--set", "data.crop_size=[64,128]", "--set", "train.batch_size=2"]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def command_lines() -> list[str]:
    lines = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def tiny(argv: list[str]) -> list[str]:
    """The README's command with the tiny sizes the test runs it at."""
    command = argv[0]
    if command == "train":
        steps = ["train.steps=3"] if any(a.startswith("train.steps=") for a in argv) else ["train.steps=2"]
        return [a for a in argv if not a.startswith("train.steps=")] + TINY_TRAIN + steps
    if command == "benchmark" and "--end-to-end" in argv:
        return [("64x128" if prev in ("--sizes", "--size") else "1" if prev == "--fit-steps" else a)
                for prev, a in zip([None, *argv], argv)] + TINY_END_TO_END
    if command == "benchmark":
        size = argv.index("--size")
        return argv[:size + 1] + ["64x128"] + argv[size + 2:] + TINY_BENCH
    if command == "reproduce":
        return argv + TINY_CLAIMS
    if argv[:2] == ["data", "synth"]:
        return argv + TINY_SCENES
    return argv


def write_cityscapes(root: Path) -> None:
    """Two cities, train and val, in the official layout, with random labelIds."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for city in ("aachen", "bochum"):
            stem = f"{city}_000000_000019"
            for folder, name, array in (
                ("leftImg8bit", f"{stem}_leftImg8bit.png", rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)),
                ("gtFine", f"{stem}_gtFine_labelIds.png", rng.integers(0, 34, (64, 128), dtype=np.uint8)),
            ):
                (root / folder / split / city).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(root / folder / split / city / name)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from eseg.data.synthetic import render_street, sample_rng

    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(REPO / "configs", root / "configs")
    street, _ = render_street(sample_rng(0, "val", 0), (96, 192))
    Image.fromarray(street).save(root / "street.png")
    (root / "photos").mkdir()
    for i in range(2):
        Image.fromarray(render_street(sample_rng(1, "val", i), (80, 150))[0]).save(root / "photos" / f"p{i}.jpg")
    import imageio.v3 as iio

    frames = np.stack([render_street(sample_rng(2, "val", i), (64, 96))[0] for i in range(3)])
    iio.imwrite(root / "clip.mp4", frames, fps=3, plugin="FFMPEG", macro_block_size=1)
    write_cityscapes(root / "data" / "cityscapes")
    return root


OWN_DATA_RUNS = {"voc": "runs/voc", "cvat": "runs/cvat", "coco": "runs/coco", "folder": "runs/mine"}


def test_the_readme_has_the_examples_this_test_runs():
    lines = command_lines()
    assert lines[:2] == ["make demo", "make test"]
    assert sum(line.startswith("eseg ") for line in lines) >= 15
    assert any(line.startswith("torchrun ") for line in lines) and len(blocks("python")) == 1
    trains = [line for line in lines if line.startswith("eseg train ")]
    written = set()
    for line in lines:  # the "your own data" walkthrough: each layout written, then trained on
        if line.startswith("eseg data synth "):
            argv = shlex.split(line)
            kind, root = argv[argv.index("--format") + 1] if "--format" in argv else "folder", argv[argv.index("--out") + 1]
            assert any(f"data.dataset.type={kind} data.dataset.root={root} " in train for train in trains), line
            written.add(kind)
    assert written == set(OWN_DATA_RUNS) and all(any(t.endswith(f"--out {run}") for t in trains)
                                                 for run in OWN_DATA_RUNS.values())
    assert any(line.startswith("eseg data convert cvat ") for line in lines)
    pyproject = (REPO / "pyproject.toml").read_text()
    extras = re.findall(r"^(\w+) = \[", pyproject.split("[project.optional-dependencies]")[1].split("\n[")[0], re.M)
    assert "onnx" in extras and "coco" in extras  # the section was read
    assert all(f"| `{extra}` |" in README for extra in extras if extra != "test")  # the extras, named in one table


def run_line(line: str, workspace: Path) -> None:
    argv = shlex.split(line)
    if argv[0] == "make":  # the two set-up commands: the targets exist and CI runs the test one
        assert f"\n{argv[1]}:" in (REPO / "Makefile").read_text() and "make test" in (REPO / ".ci" / "run").read_text()
        return
    if argv[0] == "torchrun":
        run_torchrun(argv, workspace)
        return
    assert argv[0] == "eseg", line
    assert main(tiny(argv[1:])) == 0, line


def run_torchrun(argv: list[str], workspace: Path) -> None:
    module = argv.index("-m")
    command = [sys.executable, "-m", "torch.distributed.run", *argv[1:module], "-m", argv[module + 1]]
    command += tiny(argv[module + 2:])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


@pytest.mark.slow
def test_every_readme_example_runs(workspace, monkeypatch, capsys):
    monkeypatch.chdir(workspace)
    for line in command_lines():
        run_line(line, workspace)
    capsys.readouterr()
    (code,) = blocks("python")
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own example
    assert (workspace / "runs" / "demo" / "model_128x256.xml").is_file()
    import eseg
    from eseg.data.synthetic import CLASSES

    for run in [*OWN_DATA_RUNS.values(), "runs/cvat-folder"]:  # each export trained with the scenes' 8 classes
        assert list(eseg.load_model(workspace / run / "checkpoints" / "best").config.class_names) == list(CLASSES), run
    assert (workspace / "runs" / "video" / "masks" / "clip" / "000002.png").is_file()
    assert sorted(p.name for p in (workspace / "preds").iterdir()) == [
        "aachen_000000_000019_pred.png", "bochum_000000_000019_pred.png"]
    # --quick writes its smoke-test page under runs/, never over docs/claims.md
    assert (workspace / "runs" / "claims_quick" / "claims.md").is_file()
    assert not (workspace / "docs" / "claims.md").exists()
