"""The canonical Fleet: one long table of sensor readings plus what is known about it.

Every source (C-MAPSS, telemetry + events, generic tables, the simulator) produces the same
shape, so everything downstream is written once. Columns:

- ``unit`` (str): the machine / run-to-failure segment.
- ``time`` (int64 cycle, or datetime64 timestamp): strictly increasing within a unit.
- ``setting_*`` (float, optional): operating conditions.
- ``sensor_*`` (float): readings.
- ``rul_raw`` (float): true remaining useful life at that row, uncapped, in the time unit of
  the source; NaN where unknown (right-censored units, unlabelled data).

Metadata (FleetMeta) travels beside the table: dataset name, source, per-unit fault mode and
the sensors each fault mode truly drives, where known.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

UNIT = "unit"
TIME = "time"
RUL_RAW = "rul_raw"
SENSOR_PREFIX = "sensor_"
SETTING_PREFIX = "setting_"


@dataclass(frozen=True)
class FleetMeta:
    """What is known about a fleet beside its readings."""

    name: str
    source: str
    split: str = "train"
    fault_modes: dict[str, str] = field(default_factory=dict)
    """unit -> fault mode name, where known."""
    fault_sensors: dict[str, list[str]] = field(default_factory=dict)
    """fault mode name -> the sensors it truly drives (ground truth, simulator only)."""
    censored_units: list[str] = field(default_factory=list)
    """units whose failure was not observed (rul_raw is NaN): for scoring, not labels."""
    time_unit: str = "cycle"
    extra: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> FleetMeta:
        return cls(**json.loads(text))


@dataclass
class Fleet:
    """A validated long table of readings and its metadata."""

    frame: pd.DataFrame
    meta: FleetMeta

    @property
    def sensors(self) -> list[str]:
        return [c for c in self.frame.columns if c.startswith(SENSOR_PREFIX)]

    @property
    def settings(self) -> list[str]:
        return [c for c in self.frame.columns if c.startswith(SETTING_PREFIX)]

    @property
    def units(self) -> list[str]:
        return list(pd.unique(self.frame[UNIT]))

    @property
    def n_rows(self) -> int:
        return len(self.frame)

    def unit_lengths(self) -> pd.Series:
        return self.frame.groupby(UNIT, sort=False).size()

    def content_hash(self) -> str:
        """A stable hash of table and metadata, used for caching and MLflow tags."""
        h = hashlib.sha256()
        h.update(self.meta.to_json().encode())
        h.update(",".join(map(str, self.frame.columns)).encode())
        h.update(pd.util.hash_pandas_object(self.frame, index=False).to_numpy().tobytes())
        return h.hexdigest()[:16]

    def to_parquet(self, path: str | Path) -> Path:
        """Write the table with the metadata embedded in the Parquet schema."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(self.frame, preserve_index=False)
        schema_meta = dict(table.schema.metadata or {})
        schema_meta[b"pdmlens.meta"] = self.meta.to_json().encode()
        table = table.replace_schema_metadata(schema_meta)
        tmp = path.with_suffix(path.suffix + ".tmp")
        pq.write_table(table, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def from_parquet(cls, path: str | Path) -> Fleet:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(b"pdmlens.meta")
        meta = FleetMeta.from_json(raw.decode()) if raw else FleetMeta(Path(path).stem, "parquet")
        return cls(table.to_pandas(), meta)


@dataclass
class FleetSplits:
    """What a source yields: training fleet and, where the source has one, a test fleet."""

    train: Fleet
    test: Fleet | None = None

    def items(self) -> list[tuple[str, Fleet]]:
        out = [("train", self.train)]
        if self.test is not None:
            out.append(("test", self.test))
        return out

    def content_hash(self) -> str:
        return hashlib.sha256(
            "".join(f.content_hash() for _, f in self.items()).encode()
        ).hexdigest()[:16]


def sensor_matrix(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The given columns as one contiguous float32 array (rows x columns)."""
    return np.ascontiguousarray(frame[columns].to_numpy(dtype=np.float32))
