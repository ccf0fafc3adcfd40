"""The ``pdmlens`` command line (typer).

``app`` is the top-level command (console script ``pdmlens``); sub-apps group commands:

- ``pdmlens data inspect``: load a source, validate it and print a summary (``--json`` for
  a machine-readable one). Problems are collected, not stopped at: each is printed to
  stderr as ``error: <message>`` and the exit code is 2.
- ``pdmlens data simulate``: write the built-in simulated fleet as Parquet.

Top-level commands (``run``, ``ui``, ``serve``) are added by other modules with
``@app.command()`` here; every command that touches data should be wrapped in ``guarded``
so that a DataValidationError ends as ``error: <message>`` on stderr and exit code 2, with
no traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import pandas as pd
import typer
from pydantic import ValidationError

from pdmlens.config import DataConfig, RunConfig, load_config
from pdmlens.errors import ConfigError, DataValidationError

log = logging.getLogger(__name__)

EXIT_DATA = 2
"""Exit code for bad input data (and for ``inspect`` finding problems)."""

app = typer.Typer(
    name="pdmlens",
    help="Open the black box of predictive-maintenance models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect, validate and generate fleet data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = EXIT_DATA) -> typer.Exit:
    """Print ``error: <message>`` to stderr; return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def guarded(fn: F) -> F:
    """Turn DataValidationError and ConfigError into ``error: ...`` on stderr, exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (DataValidationError, ConfigError) as exc:
            raise fail(str(exc)) from None

    return wrapper  # type: ignore[return-value]


class Source(str, Enum):
    cmapss = "cmapss"
    events = "events"
    table = "table"
    simulated = "simulated"


class NanPolicyOption(str, Enum):
    error = "error"
    ffill = "ffill"


def build_data_config(
    config: Path | None,
    source: str | None = None,
    path: str | None = None,
    subset: str | None = None,
    readings: str | None = None,
    failures: str | None = None,
    test_path: str | None = None,
    nan_policy: str | None = None,
    units: int | None = None,
) -> DataConfig:
    """The ``data`` section of ``--config`` (or the defaults) with command-line overrides;
    a value the config refuses is a ConfigError naming the option."""
    cfg = DataConfig()
    if config is not None:
        if not config.is_file():
            raise DataValidationError("config file not found", file=str(config))
        try:
            cfg = load_config(config).data
        except (OSError, ValueError) as exc:  # ConfigError is a ValueError
            raise DataValidationError(f"invalid config: {exc}", file=str(config)) from None
    top: dict[str, Any] = {}
    if source is not None:
        top["source"] = source
    if path is not None:
        top["path"] = path
    if subset is not None:
        top["subset"] = subset
    if test_path is not None:
        top["test_path"] = test_path
    if nan_policy is not None:
        top["nan_policy"] = nan_policy
    ev = {k: v for k, v in (("readings", readings), ("failures", failures)) if v is not None}
    if units is not None:
        top["simulator"] = {**cfg.simulator.model_dump(), "n_units": units}
    if ev:
        top["events"] = {**cfg.events.model_dump(), **ev}
    try:
        return DataConfig.model_validate({**cfg.model_dump(), **top})
    except ValidationError as exc:
        bad = "; ".join(
            f"--{'-'.join(str(p) for p in e['loc'][-1:]).replace('_', '-')}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"invalid option {bad}") from None


def count_regimes(frame: pd.DataFrame, settings: list[str], seed: int = 0) -> int:
    """Operating regimes in the settings (prepare's detection on a sample of rows)."""
    if not settings or len(frame) == 0:
        return 1
    x = frame[settings].to_numpy(dtype=np.float64)
    x = x[np.isfinite(x).all(axis=1)]
    if len(x) > 2000:
        x = x[np.random.default_rng(seed).choice(len(x), 2000, replace=False)]
    if len(x) == 0 or _levels(x) <= 1:
        return 1  # every setting is one level (noise around one point): no k-means needed
    from pdmlens.data.regimes import fit_regimes

    return fit_regimes(x, settings, seed=seed).n_regimes


def _levels(x: np.ndarray, gap: float = 0.05) -> int:
    """Distinct combinations of per-setting levels; a level break is a gap between sorted
    values wider than ``gap`` x the setting's range (a quick first look, no clustering)."""
    labels = np.zeros((len(x), x.shape[1]), dtype=np.int64)
    for j in range(x.shape[1]):
        col = x[:, j]
        span = float(col.max() - col.min())
        if span == 0.0:
            continue
        order = np.argsort(col, kind="stable")
        breaks = np.diff(col[order]) > gap * span
        labels[order, j] = np.concatenate([[0], np.cumsum(breaks)])
    return int(len(np.unique(labels, axis=0)))


def summarize(fleet: Any, window: int | None = None, seed: int = 0) -> dict[str, Any]:
    """What ``inspect`` reports about one split (plain JSON types)."""
    from pdmlens.data.fleet import RUL_RAW, TIME, UNIT

    frame = fleet.frame
    lengths = frame.groupby(UNIT, sort=False).size().to_numpy() if len(frame) else np.zeros(1)
    out: dict[str, Any] = {
        "name": fleet.meta.name,
        "units": int(frame[UNIT].nunique()),
        "rows": int(len(frame)),
        "sensors": fleet.sensors,
        "settings": fleet.settings,
        "regimes": count_regimes(frame, fleet.settings, seed),
        "unit_length": {
            "min": int(lengths.min()),
            "median": float(np.median(lengths)),
            "max": int(lengths.max()),
        },
        "time": {
            "first": str(frame[TIME].min()),
            "last": str(frame[TIME].max()),
            "unit": fleet.meta.time_unit,
        },
    }
    if RUL_RAW in frame.columns:
        end = pd.to_numeric(frame[RUL_RAW], errors="coerce").groupby(frame[UNIT], sort=False).last()
        out["rul_labels"] = int(end.notna().sum())
        out["end_rul"] = (
            {"min": float(end.min()), "median": float(end.median()), "max": float(end.max())}
            if end.notna().any()
            else None
        )
    out["censored_units"] = len(fleet.meta.censored_units)
    if fleet.meta.fault_modes:
        counts = pd.Series(fleet.meta.fault_modes).value_counts().sort_index()
        out["fault_modes"] = {str(k): int(v) for k, v in counts.items()}
    if window is not None:
        out["units_shorter_than_window"] = int((lengths < window).sum())
    return out


def _problem_dict(p: DataValidationError) -> dict[str, Any]:
    return {"message": str(p), "file": p.file, "column": p.column, "row": p.row, "unit": p.unit}


def _print_summary(report: dict[str, Any]) -> None:
    typer.echo(f"source: {report['source']}")
    for split in ("train", "test"):
        s = report.get(split)
        if s is None:
            continue
        ul = s["unit_length"]
        typer.echo(f"\n[{split}] {s['name']}")
        typer.echo(f"  units: {s['units']}   rows: {s['rows']}")
        typer.echo(f"  sensors ({len(s['sensors'])}): {', '.join(s['sensors'])}")
        typer.echo(f"  settings ({len(s['settings'])}): {', '.join(s['settings']) or '-'}")
        typer.echo(f"  regimes: {s['regimes']}")
        typer.echo(f"  unit length: min {ul['min']}, median {ul['median']:g}, max {ul['max']}")
        typer.echo(f"  time: {s['time']['first']} .. {s['time']['last']} ({s['time']['unit']})")
        if "rul_labels" in s:
            typer.echo(
                f"  units with a known end RUL: {s['rul_labels']}"
                f"   censored units: {s['censored_units']}"
            )
        if "fault_modes" in s:
            typer.echo(f"  fault modes: {s['fault_modes']}")
        if "units_shorter_than_window" in s:
            typer.echo(f"  units shorter than the window: {s['units_shorter_than_window']}")
    n = len(report["problems"])
    typer.echo(f"\nproblems: {n}" + (" (listed on stderr)" if n else ""))


@data_app.command("inspect")
@guarded
def inspect_cmd(
    source: Annotated[Source | None, typer.Option(help="data source (default: config)")] = None,
    path: Annotated[
        str | None,
        typer.Option(help="folder (cmapss), table file, or base folder of --readings/--failures"),
    ] = None,
    subset: Annotated[str | None, typer.Option(help="C-MAPSS subset, FD001-FD004")] = None,
    readings: Annotated[str | None, typer.Option(help="events: readings table")] = None,
    failures: Annotated[str | None, typer.Option(help="events: failures table")] = None,
    test_path: Annotated[str | None, typer.Option(help="table: separate test table")] = None,
    window: Annotated[
        int | None, typer.Option(help="refuse training units shorter than this window")
    ] = None,
    nan_policy: Annotated[
        NanPolicyOption | None, typer.Option(help="NaN handling (default: config)")
    ] = None,
    units: Annotated[int | None, typer.Option(help="simulated: training units")] = None,
    seed: Annotated[int, typer.Option(help="simulated: seed")] = 0,
    config: Annotated[Path | None, typer.Option(help="run config YAML (its data section)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON only")] = False,
) -> None:
    """Load a data source, validate it and summarise it; problems go to stderr (exit 2)."""
    from pdmlens.data.sources import load_source

    cfg = build_data_config(
        config,
        source.value if source else None,
        path,
        subset,
        readings,
        failures,
        test_path,
        nan_policy.value if nan_policy else None,
        units,
    )
    problems: list[DataValidationError] = []
    splits = load_source(cfg, window=window, seed=seed, problems=problems)
    report: dict[str, Any] = {"source": cfg.source}
    for name, fleet in splits.items():
        report[name] = summarize(fleet, window, seed)
    report["problems"] = [_problem_dict(p) for p in problems]
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        _print_summary(report)
    for p in problems:
        typer.echo(f"error: {p}", err=True)
    if problems:
        raise typer.Exit(EXIT_DATA)


def simulated_paths(out: Path) -> tuple[Path, Path]:
    """``X.parquet`` -> ``X-train.parquet``, ``X-test.parquet``; a folder -> ``train/test``."""
    if out.suffix == ".parquet":
        return (
            out.with_name(f"{out.stem}-train.parquet"),
            out.with_name(f"{out.stem}-test.parquet"),
        )
    return out / "train.parquet", out / "test.parquet"


@data_app.command("simulate")
@guarded
def simulate_cmd(
    out: Annotated[
        Path,
        typer.Option(
            help="X.parquet (writes X-train.parquet and "
            "X-test.parquet) or a folder (train/test.parquet)"
        ),
    ],
    units: Annotated[int | None, typer.Option(help="training units")] = None,
    test_units: Annotated[int | None, typer.Option(help="test units")] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    config: Annotated[
        Path | None, typer.Option(help="run config YAML (its simulator section)")
    ] = None,
) -> None:
    """Write the built-in simulated fleet (train and test) as Parquet."""
    from pdmlens.data.sources import load_source

    cfg = build_data_config(config, "simulated", units=units)
    if test_units is not None:
        cfg = DataConfig.model_validate(
            {
                **cfg.model_dump(),
                "simulator": {**cfg.simulator.model_dump(), "n_test_units": test_units},
            }
        )
    splits = load_source(cfg, seed=seed)
    train_path, test_path = simulated_paths(out)
    for (name, fleet), dest in zip(splits.items(), (train_path, test_path), strict=False):
        fleet.to_parquet(dest)
        typer.echo(f"{name}: {len(fleet.units)} units, {fleet.n_rows} rows -> {dest}")


# ----------------------------------------------------------------------------- pipeline


def _log_to_stderr(verbose: bool) -> None:
    """Progress (library and Prefect logs) to stderr, so stdout can carry JSON alone."""
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger("pdmlens")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def _print_run(s: dict[str, Any]) -> None:
    """The human summary of a run: where it is, how the models did, what explains them."""
    from pdmlens.task import task_scored_by

    task = task_scored_by(s["lstm"])
    typer.echo(f"\npdmlens run on {s['dataset']} (evaluated on {s['evaluated_on']} units)")
    typer.echo(f"  MLflow run   {s['mlflow_run_id']}  experiment '{s['experiment']}'")
    cols = [
        c
        for c in (
            "rmse",
            "mae",
            "score",
            "late_20",
            "f1",
            "all_f1",
            "all_roc_auc",
            "all_pr_auc",
            "train_seconds",
        )
        if c in s["lstm"]
    ]
    typer.echo("\n  " + f"{'model':15s}" + "".join(f"{c:>14s}" for c in cols))
    for m in ("lstm", "forest"):
        vals = "".join(f"{s[m].get(c, float('nan')):>14.2f}" for c in cols)
        typer.echo(f"  {m:15s}{vals}")
    key = task.headline
    better = task.verdict(s["lstm"].get(key), s["forest"].get(key))
    if better == "neither":
        typer.echo(f"  -> the two models are equally accurate on {task.headline_label}")
    elif better:
        typer.echo(f"  -> the {better} is more accurate on {task.headline_label}")
    e = s.get("explain") or {}
    if e:
        typer.echo("\n  explanations (SHAP)")
        typer.echo(f"    top sensors, LSTM:   {', '.join(e.get('top_sensors_lstm') or [])}")
        typer.echo(f"    top sensors, forest: {', '.join(e.get('top_sensors_forest') or [])}")
        typer.echo(
            f"    agreement (Spearman) {e.get('agreement_spearman', float('nan')):.2f}, "
            f"top-k overlap {e.get('agreement_top_k_overlap', float('nan')):.2f}"
        )
        for model in ("lstm", "forest"):
            near, every = e.get(f"{model}_precision_at_k"), e.get(f"{model}_precision_at_k_all")
            parts = [
                f"{v:.2f} {where}"
                for v, where in ((near, "near failure"), (every, "on all explained"))
                if v is not None
            ]
            if parts:
                typer.echo(
                    f"    precision@k vs the true fault sensors, {model}: " + ", ".join(parts)
                )
    if s.get("signatures"):
        typer.echo(f"\n  signatures: {s['signatures']['sentence']}")
    for r in s.get("registered", []):
        typer.echo(
            f"  registered {r['name']} v{r['version']}"
            + (" (champion)" if r["champion"] else f" ({r['reason']})")
        )
    if any(s.get("cached", {}).values()):
        typer.echo(f"  reused cached data: {', '.join(k for k, v in s['cached'].items() if v)}")
    typer.echo("\n  where to look")
    typer.echo(f"    report      {s['report']}")
    uri = str(s.get("tracking_uri") or "")
    how = (
        ""
        if uri.startswith(("http://", "https://"))
        else f"   (opens while `pdmlens ui --set tracking.uri={uri}` runs)"
    )
    typer.echo(f"    MLflow UI   {s['mlflow_url']}{how}")
    typer.echo(f"    took        {s['seconds_total']:.0f} s")


def opened_mlflow_run(exc: BaseException) -> str | None:
    """The MLflow parent run a failed pipeline had opened, when the failure says so.

    The run id is read from the exception's ``mlflow_run_id`` attribute, which the code
    that opens the run (``Tracker.tracked_run``) must set before re-raising. It cannot be
    read from the traceback: ``contextlib`` restores the original traceback when the
    exception leaves a ``with`` block, so the frame that opened the run is not in it.
    """
    run_id = getattr(exc, "mlflow_run_id", None)
    return run_id if isinstance(run_id, str) and run_id else None


def _is_the_command() -> bool:
    """Whether this process is the ``pdmlens`` command itself (not a test or a notebook
    calling the app in its own process, whose other children are none of ours)."""
    import sys

    return Path(sys.argv[0]).name.startswith("pdmlens")


def _guard_children() -> None:
    """Killed outright (SIGKILL, the OOM killer), the command leaves no process behind: a
    watchdog ends what it started (``pdmlens.processes.start_watchdog``). Only when this
    process is the ``pdmlens`` command."""
    from pdmlens.processes import start_watchdog

    if _is_the_command():
        start_watchdog()


def _preflight(cfg: RunConfig) -> None:
    """A tracking store that cannot be used ends the command here, in seconds, with one
    line and exit code 1: before Prefect starts a server and before any data is read (the
    flow checks again, for scheduled runs)."""
    from pdmlens.errors import TrackingUnavailableError
    from pdmlens.tracking import check_tracking_reachable, resolve_tracking_uri

    try:
        check_tracking_reachable(resolve_tracking_uri(cfg.tracking))
    except TrackingUnavailableError as exc:
        raise fail(f"{exc} Nothing was run.", code=1) from None


@app.command("run")
@guarded
def run_cmd(
    config: Annotated[
        Path | None,
        typer.Option(help="run config YAML (default: built-in defaults, the simulated fleet)"),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="override a config key, e.g. --set data.source=cmapss "
            "--set data.path=DIR --set data.subset=FD001 --set seed=1",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="print the summary as JSON only (progress goes to stderr)"),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the whole pipeline once: ingest, train both models, evaluate, explain, profile
    the LSTM's signatures, and record everything in MLflow."""
    _log_to_stderr(verbose)
    if as_json:  # stdout carries the JSON alone: MLflow prints run links for an http store
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    try:
        cfg = load_config(config, set_ or [])
    except (ValueError, OSError) as exc:
        raise fail(f"bad configuration: {exc}") from None
    _preflight(cfg)
    from pipelines.run import run_pipeline

    _guard_children()

    try:
        summary = run_pipeline(cfg)
    except DataValidationError:
        raise
    except Exception as exc:
        opened = opened_mlflow_run(exc)
        raise fail(
            f"the run failed: {type(exc).__name__}: {exc}"
            + (
                f" (its MLflow run {opened} and its children are marked FAILED and no "
                "model was registered)"
                if opened
                else " (no model was registered; an MLflow run, if one was opened, is "
                "marked FAILED)"
            ),
            code=1,
        ) from None
    if as_json:
        typer.echo(json.dumps(summary, default=str))
    else:
        _print_run(summary)


@app.command("ui")
def ui_cmd(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 5000,
    config: Annotated[Path | None, typer.Option(help="run config YAML (tracking section)")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a config key, e.g. tracking.uri")
    ] = None,
) -> None:
    """Start the MLflow UI on 127.0.0.1 over the local store (or the configured one).
    Ctrl-C or SIGTERM stops the server and all its workers."""
    from pdmlens.processes import run_forwarding_stops
    from pdmlens.tracking.ui import mlflow_ui_command, runs_list_urls

    try:
        cfg = load_config(config, set_ or [])
    except (ValueError, OSError) as exc:
        raise fail(f"bad configuration: {exc}") from None
    cmd, uri, address = mlflow_ui_command(cfg.tracking, port)
    urls = runs_list_urls(uri, address)
    typer.echo(
        f"MLflow UI over {uri}: experiments at {address}/#/experiments (Ctrl-C stops)", err=True
    )
    if urls:
        typer.echo("the runs list of each experiment:", err=True)
        for name, url in urls:
            typer.echo(f"  {name}: {url}", err=True)
    _guard_children()
    raise typer.Exit(run_forwarding_stops(cmd, grace=10.0))


class Overlap(str, Enum):
    skip = "skip"
    wait = "wait"


@app.command("serve")
def serve_cmd(
    cron: Annotated[
        str | None, typer.Option(help="cron schedule, e.g. '0 2 * * *' (02:00 daily)")
    ] = None,
    every: Annotated[
        float | None, typer.Option(help="instead of --cron: a run every this many seconds")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="run config YAML")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a config key")] = None,
    name: Annotated[str, typer.Option(help="deployment name")] = "scheduled",
    port: Annotated[
        int,
        typer.Option(help="port of the local Prefect server started when PREFECT_API_URL is unset"),
    ] = 4200,
    run_now: Annotated[bool, typer.Option("--run-now", help="also start one run now")] = False,
    overlap: Annotated[
        Overlap,
        typer.Option(
            help="a run due while another still runs: skip it (it ends CANCELLED) or wait "
            "for the running one to end"
        ),
    ] = Overlap.skip,
    grace: Annotated[
        float,
        typer.Option(
            help="on Ctrl-C/SIGTERM, seconds a run in progress gets to end before it is killed"
        ),
    ] = 30.0,
    score_cron: Annotated[
        str | None,
        typer.Option(
            help="also score the source's current data with the champion on this cron, "
            "e.g. '0 * * * *' (hourly)"
        ),
    ] = None,
) -> None:
    """Serve the pipeline as a scheduled Prefect deployment, one run at a time (blocks;
    Ctrl-C or SIGTERM cancels a run in progress, pauses the schedule and stops). With
    --score-cron the scoring flow is served beside it."""
    _log_to_stderr(False)
    if (cron is None) == (every is None):
        raise fail("give one of --cron and --every")
    if grace < 0:
        raise fail("--grace must be >= 0")
    try:
        cfg = load_config(config, set_ or [])
    except (ValueError, OSError) as exc:
        raise fail(f"bad configuration: {exc}") from None
    from pipelines.run import serve  # imports no Prefect: serve sets PREFECT_API_URL first

    _guard_children()
    serve(
        cfg,
        cron,
        name=name,
        port=port,
        run_once=run_now,
        interval=every,
        overlap=overlap.value,
        grace=grace,
        score_cron=score_cron,
    )


# ----------------------------------------------------------------------------- score
# (issue 14: scoring new data; kept apart from the other commands)


class ExplainChoice(str, Enum):
    all = "all"
    alerts = "alerts"
    none = "none"


@app.command("score")
@guarded
def score_cmd(
    config: Annotated[
        Path | None, typer.Option(help="config YAML: the data section names the source")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a config key, e.g. --set data.path=DIR"),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="model URI, e.g. models:/pdmlens-lstm-simulated@champion"),
    ] = None,
    run: Annotated[
        str | None, typer.Option("--run", help="score with the models a training run logged")
    ] = None,
    bundle: Annotated[
        Path | None, typer.Option(help="a local scoring bundle folder (no registry needed)")
    ] = None,
    split: Annotated[
        str, typer.Option(help="auto (test split if the source has one), test or train")
    ] = "auto",
    out: Annotated[
        Path | None, typer.Option(help="output folder (default data/scores/<timestamp>)")
    ] = None,
    explain: Annotated[
        ExplainChoice, typer.Option(help="explain all units, only alerts, or none")
    ] = ExplainChoice.all,
    board_units: Annotated[int, typer.Option(help="machines drawn on the board")] = 30,
    track: Annotated[bool, typer.Option(help="record the scoring run in MLflow")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Score new data: every machine's remaining life, the sensors behind it, whether the
    model has seen anything like it, and an alert level (act / watch / ok). Writes a fleet
    table (Parquet, CSV) and an HTML board; records the scoring run in MLflow."""
    import time

    _log_to_stderr(verbose)
    try:
        cfg = load_config(config, set_ or [])
    except (ValueError, OSError) as exc:
        raise fail(f"bad configuration: {exc}") from None
    from pdmlens.scoring.outputs import data_file, dataset_name, load_scoring_data, write_outputs
    from pdmlens.scoring.score import score_fleet

    fleet, used = load_scoring_data(cfg, split)
    dataset = dataset_name(cfg, fleet)
    tracker = None
    versions: dict[str, str] = {}
    if bundle is not None:
        from pdmlens.scoring.bundle import ScoringBundle

        if not (bundle / "bundle.json").is_file():
            raise fail(f"{bundle} is not a scoring bundle (no bundle.json)")
        loaded = ScoringBundle.load(bundle)
        versions = {"bundle": str(bundle)}
    if track or bundle is None:
        from pdmlens.tracking import Tracker

        tracker = Tracker(cfg.tracking)
    if bundle is None:
        from pdmlens.tracking import scoring as TS

        try:
            if run is not None:
                resolved = TS.run_bundle(tracker, run)
            else:
                resolved = TS.load_bundle(tracker, model or TS.champion_uri(dataset))
        except Exception as exc:  # no such model, or one without a bundle
            raise fail(f"no scoring model: {type(exc).__name__}: {exc}", code=1) from None
        loaded, versions = resolved.bundle, resolved.versions
    scores = score_fleet(loaded, fleet, explain=explain.value, file=data_file(cfg, used))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = out or Path("data/scores") / f"{dataset}-{stamp}"
    files = write_outputs(
        scores,
        loaded,
        out_dir,
        title=f"pdmlens fleet board: {dataset}",
        subtitle=f"{used} split scored {stamp}; models {versions}",
        max_board=board_units,
        split=used,
        models=versions,
    )
    run_id = None
    if track and tracker is not None:
        from pdmlens.tracking import scoring as TS
        from pdmlens.tracking.tags import SPLIT_TAG

        with TS.scoring_run(tracker, dataset, tags=TS.model_tags(versions)) as srun:
            srun.log(scores, files.artifacts(), tags={SPLIT_TAG: used})
            run_id = srun.run_id
    if as_json:
        doc = json.loads(files.summary.read_text())
        doc.update({"mlflow_run_id": run_id, "out_dir": str(out_dir), "board": str(files.board)})
        typer.echo(json.dumps(doc, default=str))
        return
    from pdmlens.scoring.board import terminal_table

    typer.echo(terminal_table(scores, loaded.task))
    typer.echo(f"\nalert rule: {scores.rule}")
    typer.echo(f"board: {files.board}\ntable: {files.parquet} (and .csv)")
    if run_id:
        typer.echo(f"MLflow scoring run {run_id} in experiment 'pdmlens-score-{dataset}'")


# ----------------------------------------------------------------------------- explorer


@app.command("explore")
def explore_cmd(
    port: Annotated[int, typer.Option(help="port on the host (0: any free port)")] = 8050,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    config: Annotated[
        Path | None, typer.Option(help="run config YAML: its store, and the base of launched runs")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a config key (also for runs launched from the page)"),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="open on the latest run of this dataset")
    ] = None,
) -> None:
    """Explore the runs of the MLflow store in the browser: the fleet, one machine, the
    LSTM's signatures, a new fault, and launching runs (Ctrl-C or SIGTERM stops it)."""
    import sys

    from pdmlens.runtime.single_thread import pin_one_thread

    # small matrices on a shared CPU: one thread each is faster than fighting over cores
    # (libraries loaded from here on, torch included, read the environment it sets)
    ours = pin_one_thread()

    try:
        cfg = load_config(config, set_ or [])
    except (ValueError, OSError) as exc:
        raise fail(f"bad configuration: {exc}") from None
    from pdmlens.explorer.app import create_app
    from pdmlens.explorer.server import serve
    from pdmlens.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(cfg.tracking)
    overrides = [s for s in (set_ or []) if not s.startswith("tracking.uri=")]
    if config is not None:
        overrides = [f"{k}={json.dumps(v)}" for k, v in cfg.flat().items() if k != "tracking.uri"]
    dash_app, launcher = create_app(uri, overrides, dataset=dataset)
    launcher.drop_env = ours  # launched runs use their own thread defaults

    def ready(url: str) -> None:
        typer.echo(f"pdmlens explorer on {url} over {uri} (Ctrl-C stops)", err=True)
        sys.stderr.flush()

    serve(dash_app.server, host=host, port=port, on_stop=launcher.stop_all, ready=ready)
