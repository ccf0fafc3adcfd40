"""Reading text files (plain or gzipped) so that every way a file can be broken is a
DataValidationError naming the file and line, never a codec or zlib traceback.

pandas' readers raise ``UnicodeDecodeError`` for a byte that is not UTF-8 and ``EOFError``
(which a command line reports as "Aborted.") or ``zlib.error`` / ``gzip.BadGzipFile`` for a
truncated or corrupt ``.gz``. None of them is a PdmlensError, so a pipeline would also retry
them as if they were transient I/O. ``named_read_errors`` turns them into named errors:
the decoding error with the line of the first offending byte (found by decoding the file's
bytes again, only when the error happened), the compression errors with the file.

Line numbers are 1-based lines of the decompressed text. ``header_lines`` converts them to
the data-row numbers of the DataValidationError contract (1 for a CSV with a header line:
the data row is the line minus one; 0 for header-less text such as C-MAPSS).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pdmlens.errors import DataValidationError

__all__ = ["named_read_errors", "read_bytes", "undecodable_line"]

_COMPRESSION_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, decompressed when its name ends in ``.gz``."""
    p = Path(path)
    with named_read_errors(p):
        if p.name.lower().endswith(".gz"):
            with gzip.open(p, "rb") as fh:
                return fh.read()
        return p.read_bytes()


def undecodable_line(data: bytes, encoding: str = "utf-8") -> tuple[int, int] | None:
    """(1-based line, byte value) of the first byte that does not decode; None if all do."""
    try:
        data.decode(encoding)
    except UnicodeDecodeError as exc:
        return data[: exc.start].count(b"\n") + 1, data[exc.start]
    return None


@contextmanager
def named_read_errors(path: str | Path, header_lines: int = 0) -> Iterator[None]:
    """Re-raise decoding and decompression errors of reading ``path`` as
    DataValidationError naming the file (and, for a decoding error, the row)."""
    file = str(path)
    try:
        yield
    except UnicodeDecodeError:
        where = undecodable_line(read_bytes(path))
        if where is None:  # pragma: no cover - the reader decoded otherwise than we do
            raise DataValidationError("the file is not UTF-8 text", file=file) from None
        line, byte = where
        row = line - header_lines
        raise DataValidationError(
            f"byte 0x{byte:02x} at line {line} is not UTF-8 text "
            + ("(in the header) " if row < 1 else "")
            + "(save the file as UTF-8)",
            file=file,
            row=row if row >= 1 else None,
        ) from None
    except _COMPRESSION_ERRORS as exc:
        raise DataValidationError(
            f"the compressed file is truncated or corrupt ({type(exc).__name__}: {exc})",
            file=file,
        ) from None
