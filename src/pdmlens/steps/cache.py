"""Cached step folders that are whole or absent, and checked before they are reused.

A cached step (ingest, prepare) writes ``<cache_dir>/<step>/<content key>/``. Three rules
keep such a folder honest:

- **atomic**: the step writes into a hidden temporary sibling, and only a finished folder
  is renamed to its key, so a run killed half-way leaves no folder that looks complete
  (only a ``.<key>.tmp-<pid>-...`` sibling, swept once its process is gone);
- **manifest**: the folder's ``output.json`` records each file's size and sha256
  (:attr:`StepResult.manifest <pdmlens.results.StepResult.manifest>`), written last;
- **verified**: before reuse every file is checked against the manifest; a missing,
  truncated or changed file (or a folder without a manifest) is logged as a warning naming
  the file, the folder is removed and the step runs again. A bad folder is never reused.

Plain functions over folders, no Prefect: the flow's cached task calls :func:`reuse`, then
:func:`build`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pdmlens.processes import pid_exists
from pdmlens.results import OUTPUT_FILE, StepResult
from pdmlens.steps.keys import file_digest

log = logging.getLogger("pdmlens.steps")

TMP_MARK = ".tmp-"
"""temporary folders are ``.<key>.tmp-<pid>-<random>`` beside the folder they become"""
OLD_MARK = ".old-"
"""a replaced folder is moved to ``.<key>.old-<pid>-<random>`` before it is removed"""


sha256_of = file_digest
"""The sha256 of a file's bytes (hex): the content keys' digest."""


def file_manifest(directory: str | Path) -> dict[str, dict[str, Any]]:
    """Every file under ``directory`` except ``output.json``: relative path (``/``) ->
    ``{"size": bytes, "sha256": hex}``. Each file is flushed to disk (fsync) on the way,
    so the manifest never describes bytes still only in the page cache."""
    root = Path(directory)
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel == OUTPUT_FILE:
            continue
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
        out[rel] = {"size": path.stat().st_size, "sha256": sha256_of(path)}
    return out


def verify(directory: str | Path) -> str | None:
    """Why the cached folder ``directory`` cannot be reused (naming the file), or None when
    every file its manifest lists is there with its recorded size and sha256. A folder
    that does not exist is "absent"."""
    root = Path(directory)
    if not root.is_dir():
        return "absent"
    record = root / OUTPUT_FILE
    if not record.is_file():
        return f"{record} is missing (the step did not finish)"
    try:
        manifest = json.loads(record.read_text(encoding="utf-8")).get("manifest")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
        return f"{record} is unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(manifest, dict) or not manifest:
        return f"{record} lists no files (written before folders were verified)"
    for rel, entry in sorted(manifest.items()):
        path = root / rel
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return f"{path} is missing"
        except OSError as exc:
            return f"{path} is unreadable ({exc})"
        if not isinstance(entry, dict) or "size" not in entry or "sha256" not in entry:
            return f"{record} has a malformed entry for {rel}"
        if size != entry["size"]:
            return f"{path} has {size} bytes, {entry['size']} were written (truncated or grown)"
        try:
            digest = sha256_of(path)
        except OSError as exc:
            return f"{path} is unreadable ({exc})"
        if digest != entry["sha256"]:
            return (
                f"{path} changed since it was written "
                f"(sha256 {digest[:12]}, expected {entry['sha256'][:12]})"
            )
    return None


def reuse(directory: str | Path) -> StepResult | None:
    """The result saved in the cached folder ``directory`` when the folder verifies; None
    when it is absent or bad, a bad one logged as a warning (naming the file) and removed,
    so the caller builds it again."""
    root = Path(directory)
    _sweep(root)
    problem = verify(root)
    if problem is None:
        return _at(StepResult.load(root), root)
    if problem != "absent":
        log.warning("cached folder %s is not reused: %s; rebuilding it", root, problem)
        _remove(root)
    return None


def build(
    directory: str | Path, make: Callable[[Path], StepResult], replace: bool = False
) -> StepResult:
    """Run ``make(tmp)`` into a temporary sibling of ``directory``, record the manifest of
    what it wrote, then rename it to ``directory`` (atomic). ``make`` failing (or the
    process dying) leaves no folder at ``directory``. When another process published a
    good folder there meanwhile, that one is kept (same key, same content) unless
    ``replace`` (caching switched off: the fresh build wins)."""
    root = Path(directory)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        result = _at(make(tmp), root, moved_from=tmp)
        result.manifest = file_manifest(tmp)
        result.save(tmp)
        with open(tmp / OUTPUT_FILE, "rb") as fh:
            os.fsync(fh.fileno())
        kept = _publish(tmp, root, replace)
    except BaseException:
        _remove(tmp)
        raise
    return result if kept is None else kept


def _publish(tmp: Path, root: Path, replace: bool) -> StepResult | None:
    """Rename ``tmp`` to ``root``; returns the result of an existing good ``root`` kept
    instead (``tmp`` removed), else None."""
    if root.exists():
        if not replace and verify(root) is None:
            _remove(tmp)
            return _at(StepResult.load(root), root)
        old = root.parent / f".{root.name}{OLD_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with contextlib.suppress(FileNotFoundError):
            root.rename(old)
        _remove(old)
    try:
        tmp.rename(root)
    except OSError:  # another process published between our check and our rename
        if root.is_dir() and verify(root) is None:
            _remove(tmp)
            return _at(StepResult.load(root), root)
        raise
    _fsync_dir(root.parent)
    return None


def _at(result: StepResult, root: Path, moved_from: Path | None = None) -> StepResult:
    """``result`` pointing at ``root``: its folder and the files it names (written under
    ``moved_from``, or under the folder recorded in it when the cache was moved)."""
    old = str(moved_from) if moved_from is not None else result.dir
    new = str(root)

    def moved(path: str) -> str:
        return new + path[len(old) :] if path.startswith(old) else path

    result.dir = new
    result.figures = {k: moved(v) for k, v in result.figures.items()}
    result.tables = {k: moved(v) for k, v in result.tables.items()}
    return result


def _sweep(root: Path) -> None:
    """Remove temporary and replaced siblings of ``root`` whose process is gone."""
    if not root.parent.is_dir():
        return
    for mark in (TMP_MARK, OLD_MARK):
        for path in root.parent.glob(f".{root.name}{mark}*"):
            pid = path.name[len(f".{root.name}{mark}") :].split("-")[0]
            if pid.isdigit() and not pid_exists(int(pid)):
                _remove(path)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
