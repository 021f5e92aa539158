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
