"""Built-once cache folders: built once, reused, never left half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from soar_orl.cache import build_once, cache_root, content_hash


def test_cache_root_follows_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOAR_ORL_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("SOAR_ORL_CACHE")
    assert cache_root() == Path("~/.cache/soar-orl").expanduser()


def test_content_hash_is_canonical() -> None:
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})
    assert len(content_hash("x")) == 16


def test_builds_once_then_reuses(tmp_path: Path) -> None:
    calls = []

    def build(out: Path) -> None:
        calls.append(out)
        (out / "file").write_text(str(len(calls)))

    folder = tmp_path / "thing"
    assert build_once(folder, build) == folder
    assert build_once(folder, build) == folder
    assert len(calls) == 1 and (folder / "file").read_text() == "1"
    build_once(folder, build, rebuild=True)
    assert len(calls) == 2 and (folder / "file").read_text() == "2"


def test_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    def build(out: Path) -> None:
        (out / "partial").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        build_once(tmp_path / "thing", build)
    assert [p.name for p in tmp_path.iterdir()] == [".thing.lock"]


def test_a_committed_copy_is_used_instead_of_building(tmp_path: Path) -> None:
    committed = tmp_path / "artifacts"
    (committed / "thing").mkdir(parents=True)
    (committed / "thing" / "file").write_text("committed")
    calls = []

    def build(out: Path) -> None:
        calls.append(out)
        (out / "file").write_text("built")

    cache = tmp_path / "cache"
    assert (build_once(cache / "thing", build, committed=committed) / "file").read_text() == "committed"
    assert (build_once(cache / "other", build, committed=committed) / "file").read_text() == "built"  # no copy of it
    assert len(calls) == 1
    build_once(cache / "thing", build, rebuild=True, committed=committed)
    assert (cache / "thing" / "file").read_text() == "built" and len(calls) == 2
    assert (committed / "thing" / "file").read_text() == "committed"  # the committed copy is never written
