"""eseg.fileio: atomic writes and strict JSON."""
import json
import math
import os

from eseg import fileio


def test_write_json_writes_nan_as_null_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "out" / "metrics.json"
    fileio.write_json(path, {"mIoU": 0.5, "per_class": {"pole": {"IoU": math.nan}}, "curve": [1.0, math.nan]})

    def refuse(token):
        raise AssertionError(f"{token} is not JSON")

    doc = json.loads(path.read_text(), parse_constant=refuse)
    assert doc == {"mIoU": 0.5, "per_class": {"pole": {"IoU": None}}, "curve": [1.0, None]}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_read_jsonl_drops_a_cut_last_line_and_names_earlier_damage(tmp_path):
    import pytest

    from eseg.errors import DataError

    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')  # killed mid-write
    assert fileio.read_jsonl(log) == [{"step": 1}, {"step": 2}]
    log.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(DataError, match=r"metrics\.jsonl:2 is not valid JSON"):
        fileio.read_jsonl(log)


def test_every_saved_file_gets_the_usual_permissions_even_when_its_writer_recreates_it(tmp_path):
    import eseg

    mask = os.umask(0o022)
    try:
        with fileio.atomic_path(tmp_path / "recreated.bin") as tmp:  # as safetensors does
            tmp.unlink()
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        eseg.create_model("eseg_lite_s", backbone="test_efficientnet", num_classes=3, fpn_width=8,
                          head_width=8).save_pretrained(tmp_path / "model")
    finally:
        os.umask(mask)
    files = [tmp_path / "recreated.bin", *sorted((tmp_path / "model").iterdir())]
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: "0o644" for f in files}
