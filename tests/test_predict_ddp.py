"""``eseg predict`` on torchrun (gloo, CPU): the ranks share the inputs, write disjoint files, and
the masks are byte-identical to one process's with the same threads; rank 0 prints the summary.
Also two local "nodes" (two torchrun launchers, --nnodes 2)."""
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eseg
from eseg.inference.sharding import Shard

# A launcher script that records every file each rank writes (through eseg.fileio.atomic_path),
# then runs the CLI as `python -m eseg.cli` would.
RECORDING_CLI = textwrap.dedent("""
    import contextlib, os, sys
    from pathlib import Path
    import eseg.fileio as fileio

    original = fileio.atomic_path
    log = Path(sys.argv[1]) / f"writes-rank{os.environ.get('RANK', 'single')}.txt"

    @contextlib.contextmanager
    def recorded(path):
        with open(log, "a") as handle:
            handle.write(f"{Path(path).resolve()}\\n")
        with original(path) as tmp:
            yield tmp

    fileio.atomic_path = recorded
    from eseg.cli import main
    sys.exit(main(sys.argv[2:]))
""")
IMAGE_SIZES = [(37, 50), (24, 31), (40, 40), (33, 65), (20, 28), (45, 77), (26, 30)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    torch.manual_seed(0)
    model = eseg.create_model("eseg_lite_s", num_classes=4, fpn_width=16, fpn_repeats=1, head_width=16, max_level=6)
    model_dir = model.save_pretrained(root / "tiny")
    rng = np.random.default_rng(0)
    (root / "in" / "sub").mkdir(parents=True)
    for i, size in enumerate(IMAGE_SIZES):
        folder = root / "in" / ("sub" if i % 3 == 0 else "")
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    (root / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    (root / "cli.py").write_text(RECORDING_CLI)
    return root, model_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def predict_args(model_dir, root, out) -> list[str]:
    return ["predict", str(model_dir), "--source", str(root / "in"), "--out", str(out), "--device", "cpu",
            "--no-progress", "--threads", "1", "--batch-size", "2"]


def run(command: list[str], logs: Path, **kwargs) -> subprocess.Popen:
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


def single_process(setup, name: str) -> Path:
    root, model_dir = setup
    out, logs = root / name, root / f"{name}-logs"
    code, stdout, stderr = finish(run([sys.executable, str(root / "cli.py"), str(logs), *predict_args(model_dir, root, out)],
                                      logs))
    assert code == 1, stderr  # broken.png: reported, exit 1
    assert "predicted 7 of 8 input(s)" in stdout
    return out


def written_by_rank(logs: Path) -> dict[str, list[str]]:
    return {p.stem: p.read_text().split() for p in sorted(logs.glob("writes-rank*.txt"))}


def assert_same_outputs(out: Path, reference: Path) -> None:
    ours = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    theirs = sorted(p.relative_to(reference).as_posix() for p in reference.rglob("*") if p.is_file())
    assert ours == theirs and len([n for n in ours if n.startswith("masks/")]) == len(IMAGE_SIZES)
    for name in ours:
        if name.startswith(("masks/", "color/", "overlay/")):
            assert (out / name).read_bytes() == (reference / name).read_bytes(), name  # byte-identical


def assert_disjoint(writes: dict[str, list[str]], ranks: int) -> None:
    assert len(writes) == ranks and all(writes.values())  # every rank wrote its share
    every = [path for paths in writes.values() for path in paths]
    assert len(every) == len(set(every))  # no file written twice, by one rank or two
    legend_writers = [rank for rank, paths in writes.items() if any(p.endswith("legend.png") for p in paths)]
    assert legend_writers == ["writes-rank0"]


def test_shards_partition_the_sorted_inputs():
    items = list(range(11))
    shards = [Shard(rank=r, world_size=3).take(items) for r in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert Shard().take(items) == items
    assert Shard(rank=1, world_size=4, local_world_size=2).cpu_threads() >= 1


def test_local_ranks_split_the_cores_between_them():
    cores = sorted(os.sched_getaffinity(0))
    shares = [Shard(rank=r, world_size=2, local_rank=r, local_world_size=2).own_cores() for r in range(2)]
    assert shares[0] + shares[1] == cores[: 2 * (len(cores) // 2)] and not set(shares[0]) & set(shares[1])
    assert Shard(rank=0, world_size=2, local_rank=0, local_world_size=len(cores) + 1).own_cores() == []


def test_two_ranks_match_one_process(setup):
    root, model_dir = setup
    reference = single_process(setup, "single")
    out, logs = root / "ddp", root / "ddp-logs"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), str(root / "cli.py"), str(logs), *predict_args(model_dir, root, out)]
    code, stdout, stderr = finish(run(command, logs))
    assert code != 0  # a rank exits 1 for broken.png, so torchrun does too
    assert stdout.count("predicted 7 of 8 input(s)") == 1 and "on 2 ranks" in stdout  # the summary, once
    assert stderr.count("1 input(s) failed") == 1 and "broken.png" in stderr
    assert_same_outputs(out, reference)
    assert_disjoint(written_by_rank(logs), 2)


def test_two_local_nodes(setup):
    root, model_dir = setup
    reference = root / "single"
    if not reference.exists():
        reference = single_process(setup, "single")
    out, logs, port = root / "nodes", root / "nodes-logs", free_port()
    launchers = []
    for node in (0, 1):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node),
                   "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
                   str(root / "cli.py"), str(logs), *predict_args(model_dir, root, out)]
        launchers.append(run(command, logs))
    (_, first, _), (_, second, _) = (finish(p) for p in launchers)
    assert first.count("predicted 7 of 8 input(s)") == 1 and "on 2 ranks" in first  # node 0 holds rank 0
    assert "predicted" not in second
    assert_same_outputs(out, reference)
    assert_disjoint(written_by_rank(logs), 2)


def test_rank_0_numbers_the_output_folder_for_all(setup, tmp_path):
    """Without --out every rank writes into the one folder rank 0 picked: runs/predict-2 here."""
    root, model_dir = setup
    (tmp_path / "runs" / "predict").mkdir(parents=True)
    args = [a for a in predict_args(model_dir, root, "unused") if a not in ("--out", "unused")]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), "-m", "eseg.cli", *args, "--save", "masks"]
    code, stdout, _ = finish(run(command, tmp_path / "logs", cwd=tmp_path))
    assert code != 0 and "outputs in runs/predict-2" in stdout  # broken.png makes it exit 1
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["predict", "predict-2"]
    written = sorted(p.name for p in (tmp_path / "runs" / "predict-2" / "masks").rglob("*.png"))
    assert written == sorted(f"img{i}.png" for i in range(len(IMAGE_SIZES)))
