"""Built-once artefacts under ${SOAR_ORL_CACHE:-~/.cache/soar-orl} (the folder run.sh uses too).

Folders are named by a hash of everything that decides their content, so a change of settings
builds a new folder and an unchanged one is reused by every clone on the machine. A build runs
in a temporary sibling folder that is renamed into place when complete: a crash never leaves a
half-written artefact behind, and a file lock makes a second process wait for the first build
instead of repeating it.

A folder may also be committed to the repository, under `artifacts/` with the same name (the
built-in worlds' base models, the walk world's teacher and their hard splits are: about 4 MB a
model, each saving a fresh clone 5-10 minutes of pretraining and sampling, and pinning the exact
weights RESULTS.md was measured with). It is then
copied instead of built; a change of settings changes the name, so a stale copy is never used.
`rebuild=True` always builds.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


COMMITTED_ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def cache_root() -> Path:
    return Path(os.environ.get("SOAR_ORL_CACHE") or "~/.cache/soar-orl").expanduser()


def content_hash(data: Any) -> str:
    """16 hex digits of SHA-256 over canonical JSON of `data` (dicts, lists, str, numbers)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def build_once(
    folder: Path, build: Callable[[Path], None], rebuild: bool = False, committed: Path = COMMITTED_ARTIFACTS
) -> Path:
    """`folder`, made by `build(tmp)` into an empty temporary folder unless it already exists, or
    copied from `committed / folder.name` when that exists (and rebuild is false)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if folder.is_dir() and not rebuild:
            return folder
        tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            if (committed / folder.name).is_dir() and not rebuild:
                shutil.copytree(committed / folder.name, tmp, dirs_exist_ok=True)
            else:
                build(tmp)
            if folder.exists():
                shutil.rmtree(folder)
            tmp.rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
