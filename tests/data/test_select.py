import json

import pytest

from synth2real.data.select import parse_names
from synth2real.errors import ConfigError, DataError


def test_none_and_empty_mean_all():
    assert parse_names(None) is None
    assert parse_names("  ") is None


def test_comma_list_strips_and_dedups():
    assert parse_names("a.jpg, b c.jpg,,a.jpg") == ["a.jpg", "b c.jpg"]


def test_line_file_skips_comments(tmp_path):
    f = tmp_path / "names.txt"
    f.write_text("# refs\nx 1.jpg\n\n  y.png  \n")
    assert parse_names(f) == ["x 1.jpg", "y.png"]


def test_json_key_and_dotted_key(tmp_path):
    f = tmp_path / "splits.json"
    f.write_text(json.dumps({"test": ["t1", "t2"], "nested": {"refs": ["r"]}, "source": "folder"}))
    assert parse_names(f"{f}:test") == ["t1", "t2"]
    assert parse_names(f"{f}:nested.refs") == ["r"]
    assert parse_names("splits.json:test", base=tmp_path) == ["t1", "t2"]
    with pytest.raises(ConfigError, match="no key 'missing'"):
        parse_names(f"{f}:missing")
    with pytest.raises(DataError, match="list of names"):
        parse_names(f"{f}:source")


def test_json_list_file_and_bad_json(tmp_path):
    f = tmp_path / "l.json"
    f.write_text('["a", "b"]')
    assert parse_names(f) == ["a", "b"]
    f.write_text("{oops")
    with pytest.raises(DataError, match="not valid JSON"):
        parse_names(f)


def test_missing_file_is_an_error_not_a_name(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        parse_names(str(tmp_path / "nope.txt"))
