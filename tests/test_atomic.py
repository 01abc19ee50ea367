"""``io.atomic.write_text``: the one atomic text writer (runs, summaries)."""

from __future__ import annotations

import pytest

from octanomaly.errors import InputError
from octanomaly.io.atomic import write_text


def test_write_text_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.json"
    assert write_text(path, "one") == path
    assert write_text(path, "two ü") == path
    assert path.read_text(encoding="utf-8") == "two ü"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_write_text_refuses_a_protected_input(tmp_path):
    src = tmp_path / "input.txt"
    src.write_text("original", encoding="utf-8")
    with pytest.raises(InputError, match="refusing to overwrite"):
        write_text(src, "new", protect=(src,))
    assert src.read_text(encoding="utf-8") == "original"
