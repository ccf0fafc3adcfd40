"""Cached step folders (``pdmlens.steps.cache``): written whole or not at all, with each
file's size and sha256 recorded, and checked before reuse, so a truncated, corrupted or
missing file is rebuilt, never read as good. Plain functions on tiny folders: fast."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pdmlens.results import OUTPUT_FILE, StepResult
from pdmlens.steps import cache

PAYLOAD = {"train.parquet": b"a" * 1000, "sub/preparer.json": b'{"x": 1}'}


def _make(tmp: Path) -> StepResult:
    """A stand-in step: two files, its result saved (as a real step saves it)."""
    for rel, data in PAYLOAD.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(data)
    return StepResult(
        "prepare", str(tmp), tables={"t": str(tmp / "train.parquet")}, info={"n": 1}
    ).save()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = tmp_path / "cache" / "prepare" / "0123abcd"
    cache.build(out, _make)
    return out


def test_build_records_each_files_size_and_sha256_and_points_at_the_folder(folder: Path):
    record = json.loads((folder / OUTPUT_FILE).read_text())
    assert set(record["manifest"]) == set(PAYLOAD)
    for rel, data in PAYLOAD.items():
        entry = record["manifest"][rel]
        assert entry["size"] == len(data)
        assert entry["sha256"] == cache.sha256_of(folder / rel)
    assert record["dir"] == str(folder)
    assert record["tables"] == {"t": str(folder / "train.parquet")}
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temp left
    assert cache.verify(folder) is None
    kept = cache.reuse(folder)
    assert kept is not None and kept.info == {"n": 1} and kept.dir == str(folder)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


def _flip(path: Path) -> None:  # same size, one byte changed
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "said"),
    [(_truncate, "990 bytes, 1000 were written"), (_flip, "changed"), (Path.unlink, "missing")],
    ids=["truncated", "flipped-byte", "missing"],
)
def test_a_damaged_file_is_named_removed_and_rebuilt(folder, damage, said, caplog):
    bad = folder / "train.parquet"
    damage(bad)
    problem = cache.verify(folder)
    assert problem is not None and str(bad) in problem and said in problem
    with caplog.at_level(logging.WARNING, logger="pdmlens.steps"):
        assert cache.reuse(folder) is None  # never read as good
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and str(bad) in warning[0].getMessage()
    assert not folder.exists()  # removed: the next build starts clean
    cache.build(folder, _make)
    assert cache.verify(folder) is None
    assert (folder / "train.parquet").read_bytes() == PAYLOAD["train.parquet"]


def test_a_folder_without_a_manifest_or_with_a_broken_record_is_not_reused(folder, caplog):
    record = folder / OUTPUT_FILE
    data = json.loads(record.read_text())
    data.pop("manifest")  # as written before folders were verified
    record.write_text(json.dumps(data))
    assert "lists no files" in (cache.verify(folder) or "")
    record.write_text('{"step": "prep')  # the record itself truncated
    assert "unreadable" in (cache.verify(folder) or "")
    record.unlink()
    assert "did not finish" in (cache.verify(folder) or "")
    with caplog.at_level(logging.WARNING, logger="pdmlens.steps"):
        assert cache.reuse(folder) is None
    assert str(record) in caplog.text


def test_a_failing_step_leaves_no_folder(tmp_path: Path):
    out = tmp_path / "prepare" / "key"

    def broken(tmp: Path) -> StepResult:
        (tmp / "train.parquet").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        cache.build(out, broken)
    assert list(out.parent.iterdir()) == []


_KILLED_MID_STEP = """
import os, sys
from pathlib import Path
from pdmlens.steps import cache

def make(tmp):
    (tmp / "train.parquet").write_bytes(b"half written")
    print(tmp, flush=True)
    os.kill(os.getpid(), 9)

cache.build(Path(sys.argv[1]), make)
"""


def test_a_process_killed_mid_step_leaves_no_folder_that_looks_complete(tmp_path: Path):
    out = tmp_path / "prepare" / "key"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_STEP, str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr
    tmp = Path(proc.stdout.strip())
    assert tmp.parent == out.parent and tmp.is_dir()  # the half folder is a hidden temp
    assert not out.exists()
    assert cache.reuse(out) is None  # absent: built again; the dead run's temp is swept
    assert not tmp.exists()
    cache.build(out, _make)
    assert cache.verify(out) is None


def test_a_good_folder_published_meanwhile_is_kept_unless_replacing(folder: Path):
    first = cache.sha256_of(folder / OUTPUT_FILE)

    def other(tmp: Path) -> StepResult:
        (tmp / "train.parquet").write_bytes(b"b" * 10)
        return StepResult("prepare", str(tmp)).save()

    kept = cache.build(folder, other)  # a racer's good folder is there: kept
    assert kept.manifest["train.parquet"]["size"] == 1000
    assert cache.sha256_of(folder / OUTPUT_FILE) == first
    fresh = cache.build(folder, other, replace=True)  # caching off: the fresh build wins
    digest = hashlib.sha256(b"b" * 10).hexdigest()
    assert fresh.manifest == {"train.parquet": {"size": 10, "sha256": digest}}
    assert cache.verify(folder) is None
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]


def test_a_moved_cache_is_reused_at_its_new_place(folder: Path, tmp_path: Path):
    moved = tmp_path / "elsewhere" / folder.name
    moved.parent.mkdir()
    folder.rename(moved)
    kept = cache.reuse(moved)
    assert kept is not None and kept.dir == str(moved)
    assert kept.tables == {"t": str(moved / "train.parquet")}
