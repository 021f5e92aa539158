"""eseg.fileio: atomic writes and strict JSON."""
import json
import math

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
