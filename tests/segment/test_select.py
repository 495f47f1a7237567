import json

import pytest

from synth2real.data.select import parse_names
from synth2real.errors import ConfigError, DataError


def test_comma_list():
    assert parse_names("a.jpg, b ,c") == ["a.jpg", "b", "c"]


def test_text_file_skips_blank_lines_and_comments(tmp_path):
    f = tmp_path / "names.txt"
    f.write_text("# test split\nx 1.jpg\n\ny\n")
    assert parse_names(str(f)) == ["x 1.jpg", "y"]


def test_json_key_and_dotted_key(tmp_path):
    f = tmp_path / "splits.json"
    f.write_text(json.dumps({"test": ["a", "b"], "nested": {"refs": ["c"]}, "source": "folder"}))
    assert parse_names(f"{f}:test") == ["a", "b"]
    assert parse_names(f"{f}:nested.refs") == ["c"]
    with pytest.raises(DataError, match="no key"):
        parse_names(f"{f}:nope")
    with pytest.raises(DataError, match="not a list"):
        parse_names(f"{f}:source")
    with pytest.raises(DataError, match="needs a key"):
        parse_names(str(f))


def test_missing_json_file_and_empty_spec(tmp_path):
    with pytest.raises(DataError, match="not found"):
        parse_names(str(tmp_path / "missing.json") + ":test")
    with pytest.raises(ConfigError):
        parse_names("  ")
    with pytest.raises(ConfigError):
        parse_names(",,")
