"""One pipeline run as the explorer sees it: its config, recorded tables, models and data.

Everything recorded comes from the MLflow store through
:class:`pdmlens.tracking.explorer_reader.StoreReader`; what a run does not record (a machine's
readings over its whole life, the prepared windows the models read) is rebuilt from the
run's ingested data and its logged config: the prepared folder in the run's cache when it
is still there, else the same preparation again (deterministic for a given seed).
Loaded runs are kept in a small in-process cache, so views share one copy.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

from pdmlens.config import RunConfig

if TYPE_CHECKING:  # imported when the store opens (it loads mlflow, about a second)
    from pdmlens.tracking.explorer_reader import StoreReader

log = logging.getLogger(__name__)


def config_from_params(params: dict[str, str]) -> RunConfig:
    """The RunConfig a run logged as flat params (unknown or unreadable keys are skipped)."""
    known = RunConfig().flat()
    values: dict[str, Any] = {}
    for key, raw in params.items():
        if key not in known:
            continue
        if raw == "None":
            values[key] = None
            continue
        try:
            values[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            values[key] = raw
    try:
        return RunConfig().with_overrides(values)
    except ValueError:  # one odd value must not hide the run: keep what validates
        cfg = RunConfig()
        for key, value in values.items():
            try:
                cfg = cfg.with_overrides({key: value})
            except ValueError:
                log.debug("param %s=%r not applied", key, value)
        return cfg


@dataclass
class RunData:
    """Lazily loaded pieces of one run (thread-safe enough for a local app: each piece is
    computed under one lock)."""

    reader: StoreReader
    run_id: str
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @cached_property
    def params(self) -> dict[str, str]:
        return self.reader.params(self.run_id)

    @cached_property
    def metrics(self) -> dict[str, float]:
        return self.reader.metrics(self.run_id)

    @cached_property
    def config(self) -> RunConfig:
        return config_from_params(self.params)

    def table(self, path: str) -> pd.DataFrame | None:
        """A Parquet artifact of the run or, failing that, of one of its child runs."""
        with self._lock:
            cache = self.__dict__.setdefault("_tables", {})
            if path not in cache:
                found = self.reader.table(self.run_id, path)
                for child in self.children.values() if found is None else ():
                    found = self.reader.table(child, path)
                    if found is not None:
                        break
                cache[path] = found
            return cache[path]

    @property
    def predictions(self) -> pd.DataFrame:
        t = self.table("predictions.parquet")
        if t is None:
            raise FileNotFoundError(f"run {self.run_id} logged no predictions.parquet")
        return t

    @cached_property
    def children(self) -> dict[str, str]:
        return self.reader.children(self.run_id)

    # ------------------------------------------------------------------------- models

    @cached_property
    def lstm(self) -> Any:
        from pdmlens.models.lstm import LSTMEstimator

        with self._lock:
            path = self.reader.model_file(self.run_id, "lstm")
            if path is None:
                raise FileNotFoundError(f"run {self.run_id} logged no LSTM model")
            return LSTMEstimator.load(path)

    @cached_property
    def forest(self) -> Any:
        from pdmlens.models.forest import ForestEstimator

        with self._lock:
            path = self.reader.model_file(self.run_id, "forest")
            if path is None:
                raise FileNotFoundError(f"run {self.run_id} logged no forest model")
            return ForestEstimator.load(path)

    # ------------------------------------------------------------------------- data

    @cached_property
    def ingest_dir(self) -> Path:
        d = self.reader.ingest_dir(self.run_id)
        if d is None:
            raise FileNotFoundError(
                f"the ingested data of run {self.run_id} is not on this machine any more"
            )
        return d

    @cached_property
    def prepared(self) -> Any:
        """The run's PreparedData: its cached folder, else prepared again from the
        ingested data with the run's config."""
        from pdmlens.data.prepare import PreparedData
        from pdmlens.data.prepare import prepare as prepare_data

        with self._lock:
            for cand in self._prepared_candidates():
                try:
                    return PreparedData.load(cand)
                except (OSError, ValueError, KeyError) as exc:
                    log.debug("prepared folder %s unusable: %s", cand, exc)
            from pdmlens.steps import load_fleets

            return prepare_data(load_fleets(self.ingest_dir), self.config)

    def _prepared_candidates(self) -> list[Path]:
        try:
            from pdmlens import steps

            key = steps.prepare_key(self.config, self.ingest_dir.name)
        except Exception as exc:  # the key's recipe may change; preparing again is fine
            log.debug("no prepare key: %s", exc)
            return []
        cache = self.ingest_dir.parent.parent  # <cache>/ingest/<key>
        cand = cache / "prepare" / key
        return [cand] if (cand / "prepared.json").is_file() else []

    @cached_property
    def raw(self) -> dict[str, pd.DataFrame]:
        """The ingested (raw, unnormalised) frames by split."""
        out = {}
        for split in ("train", "test"):
            p = self.ingest_dir / f"{split}.parquet"
            if p.is_file():
                out[split] = pd.read_parquet(p)
        return out

    @property
    def eval_split(self) -> str:
        data = self.prepared
        return "test" if data.test is not None and len(data.test) else "val"

    def windows(self, split: str) -> Any:
        """All windows (RUL target) of one prepared split, cached."""
        with self._lock:
            cache = self.__dict__.setdefault("_windows", {})
            if split not in cache:
                cache[split] = self.prepared.windows(split, self.config.window, "rul")
            return cache[split]

    def memo(self, key: Any, compute: Any) -> Any:
        """A per-run cache for derived results (signature samples, scorers...)."""
        with self._lock:
            cache = self.__dict__.setdefault("_memo", {})
            if key not in cache:
                cache[key] = compute()
            return cache[key]


class StoreOpening:
    """The store's reader, opened in a background thread from the moment this is made.

    Importing MLflow and opening its database take about two seconds on a small machine;
    the explorer serves its page and scripts meanwhile, and answers the first page's
    query (``runs()``) in the same thread. :meth:`get` waits for the reader and raises
    what opening raised (also kept in :attr:`error` for the page to show).
    """

    def __init__(self, tracking_uri: str) -> None:
        self.uri = tracking_uri
        self.first_runs: pd.DataFrame | None = None
        self.error: BaseException | None = None
        self._reader: StoreReader | None = None
        self._done = threading.Event()
        threading.Thread(target=self._open, name="open-store", daemon=True).start()

    def _open(self) -> None:
        try:
            from pdmlens.tracking.explorer_reader import StoreReader

            reader = StoreReader(self.uri)
            self.first_runs = reader.runs()
            self._reader = reader
        except Exception as exc:  # shown by the page; the server stays up
            log.error("cannot read the MLflow store %s: %s", self.uri, exc)
            self.error = exc
        finally:
            self._done.set()

    def get(self, timeout: float | None = None) -> StoreReader:
        if not self._done.wait(timeout):
            raise TimeoutError(f"the MLflow store {self.uri} did not open in {timeout} s")
        if self._reader is None:
            raise RuntimeError(f"cannot read the MLflow store {self.uri}: {self.error}")
        return self._reader


class RunCache:
    """At most ``size`` loaded runs, least recently used dropped first."""

    def __init__(self, reader: StoreReader | StoreOpening, size: int = 4) -> None:
        self.reader = reader
        self.size = size
        self._runs: OrderedDict[str, RunData] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, run_id: str) -> RunData:
        reader = self.reader.get() if isinstance(self.reader, StoreOpening) else self.reader
        with self._lock:
            run = self._runs.pop(run_id, None) or RunData(reader, run_id)
            self._runs[run_id] = run
            while len(self._runs) > self.size:
                self._runs.popitem(last=False)
            return run


def unit_rows(frame: pd.DataFrame, unit: str) -> np.ndarray:
    """Row numbers of one unit in a frame with a ``unit`` column."""
    return np.flatnonzero(frame["unit"].astype(str).to_numpy() == str(unit))
