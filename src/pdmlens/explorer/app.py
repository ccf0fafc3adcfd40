"""The explorer's Dash app: layout and callbacks of the five views.

Fleet (which machines fail soon, by both models), Machine (one machine over its life and
why at any cycle), Signatures (from which layer the LSTM's states separate health stages,
with k, layer and stage bins varied), A new fault (what a fault mode the model never saw
does to its layers) and Launch (start a run). Callbacks only wire inputs to
:mod:`.analysis` and :mod:`.figures`; every error a user can cause ends as a message in
the page (``_safe``), never as a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dash
import numpy as np
import pandas as pd
from dash import Input, Output, State, dash_table, dcc, html, no_update

from pdmlens.explorer import analysis as A
from pdmlens.explorer import figures as F
from pdmlens.explorer.launch import Launcher, form_overrides
from pdmlens.explorer.rundata import RunCache, StoreOpening

log = logging.getLogger(__name__)

VIEWS = (
    ("fleet", "Fleet"),
    ("machine", "Machine"),
    ("signatures", "Signatures"),
    ("newfault", "A new fault"),
    ("launch", "Launch"),
)
ALERT_STYLE = {"act": "#f8d7da", "watch": "#fff3cd"}
BOX = {"padding": "8px 12px", "margin": "6px 0", "borderRadius": "4px"}
ERROR_STYLE = {**BOX, "background": "#f8d7da", "color": "#721c24"}
NOTE_STYLE = {**BOX, "background": "#eef3f8"}


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """One BLAS/OpenMP/torch thread in this (server worker) thread: thread limits are per
    thread, and on a shared CPU the small matrices here are many times faster so."""
    from pdmlens.runtime.single_thread import one_thread

    with one_thread():
        yield


class UserError(Exception):
    """A problem the page shows as a message (bad input, missing data)."""


def _safe(n_outputs: int, message_index: int | None = None) -> Callable:
    """Wrap a callback: any exception becomes a message in output ``message_index`` (the
    others unchanged), logged with its traceback on the server only."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any) -> Any:
            try:
                with single_threaded():
                    return fn(*args)
            except dash.exceptions.PreventUpdate:
                raise
            except Exception as exc:
                if not isinstance(exc, (UserError, ValueError, FileNotFoundError, KeyError)):
                    log.exception("callback %s failed", fn.__name__)
                text = (
                    str(exc)
                    if isinstance(exc, (UserError, ValueError))
                    else (f"{type(exc).__name__}: {exc}")
                )
                msg = html.Div(text, className="error", style=ERROR_STYLE)
                if message_index is None:
                    return msg if n_outputs == 1 else [no_update] * n_outputs
                out: list[Any] = [no_update] * n_outputs
                out[message_index] = msg
                return out if n_outputs > 1 else out[0]

        return wrapper

    return deco


def layer_label(layer: Any) -> str:
    """ "input" for layer 0, "LSTM layer n" for n >= 1 (as the signatures step names them)."""
    return "input" if int(layer) == 0 else f"LSTM layer {int(layer)}"


def _run_label(row: pd.Series) -> str:
    rmse = [
        f"{m} RMSE {row[f'{m}_test_rmse']:.1f}"
        for m in ("lstm", "forest")
        if pd.notna(row.get(f"{m}_test_rmse"))
    ]
    when = row["start_time"].strftime("%Y-%m-%d %H:%M")
    return f"{row['dataset'] or row['experiment']} · {when} · {row['name']}" + (
        f" · {', '.join(rmse)}" if rmse else ""
    )


def _num_input(id_: str, label: str, value: Any, **kw: Any) -> html.Div:
    return html.Div(
        [
            html.Label(label, htmlFor=id_, style={"display": "block", "fontWeight": "bold"}),
            dcc.Input(id=id_, type="number", value=value, debounce=False, **kw),
        ],
        style={"display": "inline-block", "marginRight": "18px", "verticalAlign": "top"},
    )


def _graph(id_: str) -> html.Div:
    """A figure's place in a view; its callback puts the plot in (:func:`_plot`). No plot
    is in the page until a view with one is shown, so plotly.js (about a second of the
    browser's time on a small machine) is not loaded before the fleet table shows."""
    return html.Div(id=id_, className="graph")


def _plot(id_: str, figure: Any) -> Any:
    """The plot for place ``id_`` (the same component each time, so updates are light)."""
    if figure is no_update:
        return figure
    return dcc.Graph(id=f"{id_}-plot", figure=figure, config={"displaylogo": False})


def build_layout(launch_defaults: dict[str, Any], n_fault_modes: int) -> html.Div:
    views = {
        "fleet": [
            html.H2("Fleet: which machines fail soon?"),
            html.Div(id="fleet-summary", style=NOTE_STYLE),
            html.P(
                "Latest cycle of every evaluated machine. Sort by any column; click a machine "
                "to open its page. Alert: act when the lower prediction is at or below the "
                "horizon, watch at or below twice it (as pdmlens score and the report). "
                "Top sensors: the LSTM's SHAP on the last window; novel: its last-layer "
                "signature is above the novelty threshold.",
                className="help",
            ),
            dash_table.DataTable(  # type: ignore[attr-defined]
                id="fleet-table",
                sort_action="native",
                page_size=50,
                style_table={"overflowX": "auto"},
                style_cell={"fontFamily": "sans-serif", "fontSize": 13, "padding": "4px 8px"},
                style_header={"fontWeight": "bold"},
                style_data_conditional=[
                    {"if": {"filter_query": f"{{alert}} = '{a}'"}, "backgroundColor": c}
                    for a, c in ALERT_STYLE.items()
                ]
                + [{"if": {"column_id": "machine"}, "color": "#0b5ed7", "cursor": "pointer"}],
            ),
            html.H3("Scored data: machines still running, no failure known yet"),
            html.P(
                "What pdmlens score (or the scheduled scoring flow) recorded for this "
                "dataset, newest first: every machine's latest state, the alert and its "
                "reason, whether the model has seen anything like it, and the sensors behind "
                "the prediction. Click a machine for the whole story.",
                className="help",
            ),
            dcc.Dropdown(id="scored-select", clearable=False, style={"width": "900px"}),
            html.Div(id="scored-summary", style=NOTE_STYLE),
            dash_table.DataTable(  # type: ignore[attr-defined]
                id="scored-table",
                sort_action="native",
                page_size=50,
                style_table={"overflowX": "auto"},
                style_cell={
                    "fontFamily": "sans-serif",
                    "fontSize": 13,
                    "padding": "4px 8px",
                    "maxWidth": "320px",
                    "whiteSpace": "normal",
                },
                style_header={"fontWeight": "bold"},
                style_data_conditional=[
                    {"if": {"filter_query": f"{{alert}} = '{a}'"}, "backgroundColor": c}
                    for a, c in ALERT_STYLE.items()
                ]
                + [{"if": {"column_id": "machine"}, "color": "#0b5ed7", "cursor": "pointer"}],
            ),
            html.Div(id="scored-detail"),
        ],
        "machine": [
            html.H2("Machine: why this prediction, at any cycle?"),
            html.Div(
                [
                    html.Label("machine", htmlFor="machine-select", style={"fontWeight": "bold"}),
                    dcc.Dropdown(id="machine-select", clearable=False, style={"width": "260px"}),
                ]
            ),
            html.Div(id="machine-summary", style=NOTE_STYLE),
            _graph("machine-rul"),
            html.Label("cycle (the window that ends there)", style={"fontWeight": "bold"}),
            dcc.Slider(
                id="cycle-slider",
                min=0,
                max=1,
                step=1,
                value=1,
                marks=None,
                tooltip={"always_visible": True, "placement": "bottom"},
            ),
            html.Div(id="window-summary", style=NOTE_STYLE),
            _graph("machine-shap"),
            _graph("machine-raw"),
            html.H3("The LSTM's gates in this window"),
            html.Div(
                [
                    html.Div(
                        [
                            html.Label("layer", style={"fontWeight": "bold"}),
                            dcc.Dropdown(
                                id="gate-layer", clearable=False, style={"width": "160px"}
                            ),
                        ],
                        style={"display": "inline-block", "marginRight": "18px"},
                    ),
                    html.Div(
                        [
                            html.Label("gate", style={"fontWeight": "bold"}),
                            dcc.Dropdown(
                                id="gate-name",
                                options=[
                                    {"label": f"{g}: {A.GATE_NAMES[g]}", "value": g}
                                    for g in A.GATES
                                ],
                                value="o",
                                clearable=False,
                                style={"width": "220px"},
                            ),
                        ],
                        style={"display": "inline-block", "marginRight": "18px"},
                    ),
                    dcc.RadioItems(
                        id="gate-view",
                        options=[
                            {"label": " this window", "value": "window"},
                            {"label": " healthy minus failing (fleet mean)", "value": "diff"},
                        ],
                        value="window",
                        inline=True,
                        style={"display": "inline-block"},
                    ),
                ]
            ),
            _graph("machine-gates"),
            html.H3("Novelty over its life"),
            dcc.Dropdown(id="novelty-layer", clearable=False, style={"width": "200px"}),
            _graph("machine-novelty"),
        ],
        "signatures": [
            html.H2("Signatures: from which layer does behaviour change?"),
            html.Div(
                [
                    html.Div(
                        [
                            html.Label("layer (map)", style={"fontWeight": "bold"}),
                            dcc.Dropdown(id="sig-layer", clearable=False, style={"width": "180px"}),
                        ],
                        style={"display": "inline-block", "marginRight": "18px"},
                    ),
                    _num_input("sig-k", "k (clusters)", 4, min=2, max=12, step=1),
                    html.Div(
                        [
                            html.Label(
                                "stage bins (RUL edges, cycles)",
                                htmlFor="sig-bins",
                                style={"display": "block", "fontWeight": "bold"},
                            ),
                            dcc.Input(
                                id="sig-bins", type="text", value="0, 30, 75, 125", debounce=True
                            ),
                        ],
                        style={"display": "inline-block", "marginRight": "18px"},
                    ),
                    dcc.RadioItems(
                        id="sig-color",
                        options=[
                            {"label": " colour by cluster", "value": "cluster"},
                            {"label": " colour by health stage", "value": "stage"},
                        ],
                        value="stage",
                        inline=True,
                        style={"display": "inline-block"},
                    ),
                ]
            ),
            html.Div(id="sig-verdict", style=NOTE_STYLE),
            dash_table.DataTable(  # type: ignore[attr-defined]
                id="sig-table",
                style_cell={"fontFamily": "sans-serif", "fontSize": 13, "padding": "4px 8px"},
                style_header={"fontWeight": "bold"},
            ),
            html.Div(id="sig-timing", className="help"),
            _graph("sig-map"),
        ],
        "newfault": [
            html.H2("A new fault: what fires on data the model has not seen?"),
            html.P(
                "The run's LSTM reads windows of a simulated fault mode it was not trained on "
                "(the same plant, another seed). Per layer: novelty scores of the familiar "
                "evaluated windows and of the new ones, the threshold calibrated on "
                "validation windows, the share of new windows detected and of familiar ones "
                "falsely flagged, and the hidden units that fire only on the new fault.",
                className="help",
            ),
            dcc.Checklist(id="nf-modes", inline=True),
            html.Div(id="nf-message"),
            dash_table.DataTable(  # type: ignore[attr-defined]
                id="nf-table",
                style_cell={"fontFamily": "sans-serif", "fontSize": 13, "padding": "4px 8px"},
                style_header={"fontWeight": "bold"},
            ),
            html.Div(id="nf-graphs"),
        ],
        "launch": [
            html.H2("Launch a run"),
            html.P(
                "A few parameters of a new run, checked against the config schema; the rest "
                "come from the explorer's base configuration. The run appears in the run list "
                "when it ends.",
                className="help",
            ),
            html.Div(
                [
                    html.Div(
                        [
                            html.Label("dataset", style={"display": "block", "fontWeight": "bold"}),
                            dcc.Dropdown(
                                id="launch-dataset",
                                options=[
                                    {"label": "simulated fleet", "value": "simulated"},
                                    {"label": "NASA C-MAPSS", "value": "cmapss"},
                                ],
                                value=launch_defaults["dataset"],
                                clearable=False,
                                style={"width": "200px"},
                            ),
                        ],
                        style={"display": "inline-block", "marginRight": "18px"},
                    ),
                    html.Div(
                        [
                            html.Label(
                                "C-MAPSS folder",
                                htmlFor="launch-path",
                                style={"display": "block", "fontWeight": "bold"},
                            ),
                            dcc.Input(
                                id="launch-path",
                                type="text",
                                value=launch_defaults.get("path") or "",
                                style={"width": "260px"},
                            ),
                        ],
                        style={"display": "inline-block", "marginRight": "18px"},
                    ),
                ]
            ),
            html.Div(
                [
                    _num_input("launch-window", "window (cycles)", launch_defaults["window"]),
                    _num_input("launch-hidden", "hidden size", launch_defaults["hidden"]),
                    _num_input("launch-epochs", "epochs", launch_defaults["epochs"]),
                    _num_input("launch-seed", "seed", launch_defaults["seed"]),
                ],
                style={"margin": "10px 0"},
            ),
            html.Label("fault modes kept for training (simulated)", style={"fontWeight": "bold"}),
            dcc.Checklist(
                id="launch-modes",
                options=[{"label": f" mode {m}", "value": m} for m in range(n_fault_modes)],
                value=launch_defaults["modes"],
                inline=True,
            ),
            html.Button(
                "Start run",
                id="launch-button",
                n_clicks=0,
                style={"marginTop": "10px", "padding": "6px 16px"},
            ),
            html.Div(id="launch-message"),
            html.Div(id="launch-jobs"),
            dcc.Interval(id="launch-poll", interval=1500, disabled=True),
        ],
    }
    return html.Div(
        [
            html.Div(
                [
                    html.H1("pdmlens explorer", style={"margin": "0 24px 0 0", "fontSize": 22}),
                    dcc.Dropdown(id="run-select", clearable=False, style={"width": "720px"}),
                ],
                style={"display": "flex", "alignItems": "center"},
            ),
            html.Div(id="run-summary", className="help"),
            dcc.Tabs(
                id="tabs",
                value="fleet",
                children=[dcc.Tab(label=label, value=key, id=f"tab-{key}") for key, label in VIEWS],
            ),
            *[
                html.Div(views[key], id=f"view-{key}", style={"display": "none"})
                for key, _ in VIEWS
            ],
            dcc.Store(id="fleet-base"),
            dcc.Store(id="fleet-extra"),
            dcc.Store(id="runs-version", data=0),
        ],
        style={"fontFamily": "sans-serif", "margin": "12px 20px", "maxWidth": "1400px"},
    )


def create_app(
    tracking_uri: str,
    base_overrides: list[str] | None = None,
    dataset: str | None = None,
    workdir: str | Path | None = None,
) -> tuple[dash.Dash, Launcher]:
    """The Dash app over one MLflow store and the launcher of its runs.

    ``base_overrides``: ``key=value`` config overrides every launched run starts from (the
    store's own ``tracking.uri`` is always added); ``dataset``: open on the latest run of
    this dataset (default: the latest run).
    """
    from pdmlens.config import RunConfig, parse_overrides

    store = StoreOpening(tracking_uri)  # opens while the page and its scripts are served
    runs = RunCache(store)
    base = [*(base_overrides or []), f"tracking.uri={tracking_uri}"]
    base_cfg = RunConfig().with_overrides(parse_overrides(base))
    import tempfile

    launcher = Launcher(base, workdir or tempfile.mkdtemp(prefix="pdmlens-launch-"))
    sim = base_cfg.data.simulator
    defaults = {
        "dataset": base_cfg.data.source
        if base_cfg.data.source in ("simulated", "cmapss")
        else "simulated",
        "path": base_cfg.data.path,
        "window": base_cfg.window.length,
        "hidden": base_cfg.model.lstm.hidden_size,
        "epochs": base_cfg.model.lstm.epochs,
        "seed": base_cfg.seed,
        "modes": list(sim.fault_mode_subset or range(sim.fault_modes)),
    }
    app = dash.Dash(
        __name__,
        title="pdmlens explorer",
        suppress_callback_exceptions=False,
        update_title="",
    )
    app.layout = build_layout(defaults, sim.fault_modes)

    # ------------------------------------------------------------------ runs and tabs

    @app.callback(
        Output("run-select", "options"),
        Output("run-select", "value"),
        Input("runs-version", "data"),
        State("run-select", "value"),
    )
    def list_runs(_version: int, current: str | None) -> tuple[list[dict], str | None]:
        try:
            reader = store.get()
        except RuntimeError:  # the store could not be read: run_summary says why
            return [], None
        table, store.first_runs = store.first_runs, None  # the first answer, once
        table = reader.runs() if table is None else table
        table = table[table["status"] == "FINISHED"]  # pipeline runs (scoring: Fleet view)
        options = [{"label": _run_label(r), "value": r["run_id"]} for _, r in table.iterrows()]
        if current in set(table["run_id"]):
            return options, current
        pick = table
        if dataset:
            mine = table[table["dataset"] == dataset]
            pick = mine if len(mine) else table
        return options, (pick["run_id"].iloc[0] if len(pick) else None)

    @app.callback(
        *[Output(f"view-{key}", "style") for key, _ in VIEWS],
        Input("tabs", "value"),
    )
    def show_view(tab: str) -> list[dict]:
        return [{"display": "block" if key == tab else "none"} for key, _ in VIEWS]

    @app.callback(Output("run-summary", "children"), Input("run-select", "value"))
    @_safe(1, 0)
    def run_summary(run_id: str | None) -> Any:
        if not run_id:
            if store.error is not None:
                return html.Div(
                    f"Cannot read the MLflow store {tracking_uri}: {store.error}",
                    style=ERROR_STYLE,
                )
            return html.Div(
                "No finished run in this store yet: start one in Launch (or `pdmlens run`).",
                style=NOTE_STYLE,
            )
        run = runs.get(run_id)
        m = run.metrics
        cfg = run.config
        parts = [f"run {run_id[:8]} on {cfg.data.source}"]
        for model in ("lstm", "forest"):
            if f"{model}_test_rmse" in m:
                parts.append(f"{model} test RMSE {m[f'{model}_test_rmse']:.1f} cycles")
        parts.append(
            f"window {cfg.window.length} cycles, hidden {cfg.model.lstm.hidden_size}, "
            f"{cfg.model.lstm.epochs} epochs, seed {cfg.seed}"
        )
        return " · ".join(parts)

    # ------------------------------------------------------------------ fleet

    @app.callback(Output("fleet-base", "data"), Input("run-select", "value"))
    def fleet_base(run_id: str | None) -> Any:
        if not run_id:
            return None
        run = runs.get(run_id)
        cfg = run.config
        try:
            table = A.fleet_table(run.predictions, cfg.prepare.horizon, cfg.prepare.rul_cap)
        except FileNotFoundError as exc:
            return {"run_id": run_id, "error": str(exc)}
        return {"run_id": run_id, "rows": table.to_dict("records"), "horizon": cfg.prepare.horizon}

    @app.callback(Output("fleet-extra", "data"), Input("fleet-base", "data"))
    def fleet_extra(base: dict | None) -> Any:
        if not base or "rows" not in base:
            return None
        run = runs.get(base["run_id"])
        try:
            with single_threaded():
                extra = A.fleet_extras(run, [r["machine"] for r in base["rows"]])
        except Exception as exc:  # the table stands without them
            log.warning("fleet extras of %s: %s", base["run_id"], exc)
            return {"run_id": base["run_id"], "error": str(exc)}
        return {"run_id": base["run_id"], "rows": extra.to_dict("records")}

    @app.callback(
        Output("fleet-table", "data"),
        Output("fleet-table", "columns"),
        Output("fleet-summary", "children"),
        Input("fleet-base", "data"),
    )
    def fleet_first(base: dict | None) -> tuple[Any, Any, Any]:
        """The table from the recorded predictions at once (extras come after)."""
        return fleet_view(base, None)

    @app.callback(
        Output("fleet-table", "data", allow_duplicate=True),
        Output("fleet-table", "columns", allow_duplicate=True),
        Output("fleet-summary", "children", allow_duplicate=True),
        Input("fleet-extra", "data"),
        State("fleet-base", "data"),
        prevent_initial_call=True,
    )
    def fleet_with_extras(extra: dict | None, base: dict | None) -> tuple[Any, Any, Any]:
        if not extra or not base or extra.get("run_id") != base.get("run_id"):
            raise dash.exceptions.PreventUpdate
        return fleet_view(base, extra)

    def fleet_view(base: dict | None, extra: dict | None) -> tuple[Any, Any, Any]:
        if not base:
            return [], [], "No run selected."
        if "error" in base:
            return [], [], html.Div(base["error"], style=ERROR_STYLE)
        table = pd.DataFrame(base["rows"])
        if extra and extra.get("run_id") == base["run_id"] and "rows" in extra:
            ex = pd.DataFrame(extra["rows"])
            table = table.merge(ex, on="machine", how="left")
            table["novel"] = table["novel"].map({True: "yes", False: "no"})
        table["id"] = table["machine"]
        columns = [{"name": c.replace("_", " "), "id": c} for c in table.columns if c != "id"]
        return table.to_dict("records"), columns, _fleet_sentence(table, base["horizon"])

    @app.callback(
        Output("tabs", "value"),
        Output("machine-select", "value"),
        Input("fleet-table", "active_cell"),
        prevent_initial_call=True,
    )
    def open_machine(cell: dict | None) -> tuple[Any, Any]:
        if not cell or not cell.get("row_id"):
            raise dash.exceptions.PreventUpdate
        return "machine", cell["row_id"]

    # ------------------------------------------------------------------ scored data

    scored_tables: dict[str, pd.DataFrame] = {}

    def scored(scoring_run: str) -> pd.DataFrame:
        if scoring_run not in scored_tables:
            table = store.get().scored_table(scoring_run)
            if table is None:
                raise UserError(f"scoring run {scoring_run} logged no score table")
            scored_tables[scoring_run] = table
        return scored_tables[scoring_run]

    @app.callback(
        Output("scored-select", "options"),
        Output("scored-select", "value"),
        Output("scored-summary", "children", allow_duplicate=True),
        Input("run-select", "value"),
        Input("runs-version", "data"),
        prevent_initial_call="initial_duplicate",
    )
    @_safe(3, 2)
    def scored_options(run_id: str | None, _version: int) -> tuple:
        if not run_id:
            return [], None, ""
        reader = store.get()
        dataset = reader.dataset(run_id)
        table = reader.scoring_runs(dataset) if dataset else pd.DataFrame()
        if table.empty:
            return (
                [],
                None,
                f"No scored data for {dataset or 'this dataset'} yet. `pdmlens score --run "
                f"{run_id}` scores the source's current data with this run's models (without "
                "--run: with the champion) and records it here.",
            )
        options = [
            {"label": _scored_label(r, run_id), "value": r["run_id"]} for _, r in table.iterrows()
        ]
        mine = table[table["training_run"] == run_id]
        pick = (mine if len(mine) else table)["run_id"].iloc[0]
        return options, pick, no_update

    @app.callback(
        Output("scored-table", "data"),
        Output("scored-table", "columns"),
        Output("scored-summary", "children"),
        Output("scored-detail", "children", allow_duplicate=True),
        Input("scored-select", "value"),
        prevent_initial_call="initial_duplicate",
    )
    @_safe(4, 2)
    def scored_view(scoring_run: str | None) -> tuple:
        if not scoring_run:
            return [], [], no_update, ""
        table = A.scored_fleet_table(scored(scoring_run))
        table["id"] = table["machine"]
        columns = [{"name": c.replace("_", " "), "id": c} for c in table.columns if c != "id"]
        return table.to_dict("records"), columns, _scored_sentence(table), ""

    @app.callback(
        Output("scored-detail", "children"),
        Input("scored-table", "active_cell"),
        State("scored-select", "value"),
        prevent_initial_call=True,
    )
    @_safe(1)
    def scored_detail(cell: dict | None, scoring_run: str | None) -> Any:
        if not cell or not cell.get("row_id") or not scoring_run:
            raise dash.exceptions.PreventUpdate
        lines = A.scored_machine_story(scored(scoring_run), cell["row_id"])
        return html.Div([html.P(line) for line in lines], style=NOTE_STYLE, id="scored-story")

    # ------------------------------------------------------------------ machine

    @app.callback(
        Output("machine-select", "options"),
        Output("machine-select", "value", allow_duplicate=True),
        Output("gate-layer", "options"),
        Output("gate-layer", "value"),
        Output("novelty-layer", "options"),
        Output("novelty-layer", "value"),
        Input("fleet-base", "data"),
        State("machine-select", "value"),
        prevent_initial_call="initial_duplicate",
    )
    def machine_options(base: dict | None, current: str | None) -> tuple:
        if not base or "rows" not in base:
            return [], None, [], None, [], None
        machines = [r["machine"] for r in base["rows"]]
        run = runs.get(base["run_id"])
        n_layers = run.config.model.lstm.num_layers
        layers = [{"label": f"LSTM layer {i}", "value": i} for i in range(1, n_layers + 1)]
        nov_layers = [{"label": layer_label(i), "value": i} for i in range(n_layers + 1)]
        value = current if current in machines else (machines[0] if machines else None)
        return (
            [{"label": m, "value": m} for m in machines],
            value,
            layers,
            1,
            nov_layers,
            n_layers,
        )

    @app.callback(
        Output("cycle-slider", "min"),
        Output("cycle-slider", "max"),
        Output("cycle-slider", "value"),
        Output("cycle-slider", "marks"),
        Input("run-select", "value"),
        Input("machine-select", "value"),
    )
    def cycle_range(run_id: str | None, unit: str | None) -> tuple:
        if not run_id or not unit:
            raise dash.exceptions.PreventUpdate
        run = runs.get(run_id)
        hist = A.machine_history(run.predictions, unit, run.config.prepare.rul_cap)
        if hist.empty:
            raise dash.exceptions.PreventUpdate
        lo, hi = int(hist["time"].min()), int(hist["time"].max())
        step = max(1, (hi - lo) // 8)
        marks = {int(t): str(int(t)) for t in range(lo, hi + 1, step)}
        return lo, hi, hi, marks

    @app.callback(
        Output("machine-rul", "children"),
        Output("machine-summary", "children"),
        Input("run-select", "value"),
        Input("machine-select", "value"),
        Input("cycle-slider", "value"),
        Input("tabs", "value"),
    )
    @_safe(2, 1)
    def machine_rul(
        run_id: str | None, unit: str | None, cycle: float | None, tab: str = ""
    ) -> tuple:
        if tab != "machine" or not run_id or not unit:
            raise dash.exceptions.PreventUpdate
        run = runs.get(run_id)
        cap = run.config.prepare.rul_cap
        hist = A.machine_history(run.predictions, unit, cap)
        fig = F.rul_history(hist, unit, cycle, cap)
        last = hist.iloc[-1]
        text = (
            f"{unit} at its latest cycle {int(last['time'])}: LSTM predicts "
            f"{last['lstm']:.0f} cycles left, the forest {last['forest']:.0f}"
        )
        if "true_capped" in hist.columns:
            text += f" (true {last['true']:.0f}; capped at {cap:g}: {last['true_capped']:.0f})"
        return _plot("machine-rul", fig), text + "."

    @app.callback(
        Output("machine-shap", "children"),
        Output("machine-raw", "children"),
        Output("window-summary", "children"),
        Input("run-select", "value"),
        Input("machine-select", "value"),
        Input("cycle-slider", "value"),
        Input("tabs", "value"),
    )
    @_safe(3, 2)
    def machine_window(
        run_id: str | None, unit: str | None, cycle: float | None, tab: str = ""
    ) -> tuple:
        if tab != "machine" or not run_id or not unit or cycle is None:
            raise dash.exceptions.PreventUpdate
        run = runs.get(run_id)
        t0 = time.perf_counter()
        attr = A.shap_window(run, unit, float(cycle))
        top = A.top_sensors(attr, 3)
        cycles = attr.index.to_numpy()
        raw = run.raw.get("test" if run.eval_split == "test" else "train")
        raw_fig = (
            F.raw_readings(raw, unit, top, (float(cycles[0]), float(cycles[-1])))
            if raw is not None
            else F.empty("raw readings not available")
        )
        hist = A.machine_history(run.predictions, unit, run.config.prepare.rul_cap)
        row = hist.iloc[(hist["time"] - float(cycle)).abs().argmin()]
        text = (
            f"Window ending at cycle {int(row['time'])}: LSTM {row['lstm']:.0f}, forest "
            f"{row['forest']:.0f} cycles left"
            + (f", true {row['true_capped']:.0f}" if "true_capped" in row else "")
            + f". Top sensors by SHAP: {', '.join(top)} "
            f"(computed in {time.perf_counter() - t0:.2f} s)."
        )
        shap_fig = F.shap_heatmap(attr, unit, float(cycle))
        return _plot("machine-shap", shap_fig), _plot("machine-raw", raw_fig), text

    @app.callback(
        Output("machine-gates", "children"),
        Input("run-select", "value"),
        Input("machine-select", "value"),
        Input("cycle-slider", "value"),
        Input("gate-layer", "value"),
        Input("gate-name", "value"),
        Input("gate-view", "value"),
        Input("tabs", "value"),
    )
    @_safe(1)
    def machine_gates(
        run_id: str | None,
        unit: str | None,
        cycle: float | None,
        layer: int | None,
        gate: str,
        view: str,
        tab: str = "",
    ) -> Any:
        if tab != "machine" or not run_id or not unit or cycle is None or not layer:
            raise dash.exceptions.PreventUpdate
        run = runs.get(run_id)
        hidden = run.lstm.network_.lstm.hidden_size
        order = A.unit_order(run.table("signatures/selectivity.parquet"), int(layer), hidden)
        name = f"LSTM layer {layer}, {A.GATE_NAMES[gate]} ({gate})"
        if view == "diff":
            diff = A.gate_difference(run, int(layer), gate)
            steps = np.arange(1, diff.shape[0] + 1)
            title = f"{name}: healthy minus failing windows (fleet mean)"
            return _plot("machine-gates", F.gate_heatmap(diff, steps, order, title, True))
        trace, cycles = A.gates_window(run, unit, float(cycle))
        values = np.asarray(trace.layers[int(layer) - 1][gate])[0]
        title = f"{name}: {unit}, window ending at cycle {cycle}"
        return _plot("machine-gates", F.gate_heatmap(values, cycles, order, title, False))

    @app.callback(
        Output("machine-novelty", "children"),
        Input("run-select", "value"),
        Input("machine-select", "value"),
        Input("novelty-layer", "value"),
        Input("tabs", "value"),
    )
    @_safe(1)
    def machine_novelty(
        run_id: str | None, unit: str | None, layer: int | None, tab: str = ""
    ) -> Any:
        if tab != "machine" or not run_id or not unit or layer is None:
            raise dash.exceptions.PreventUpdate
        nov = A.machine_novelty(runs.get(run_id), unit)
        nov = nov[nov["layer"] == int(layer)]
        return _plot("machine-novelty", F.novelty_line(nov, unit, layer_label(int(layer))))

    # ------------------------------------------------------------------ signatures

    @app.callback(
        Output("sig-layer", "options"),
        Output("sig-layer", "value"),
        Input("run-select", "value"),
        State("sig-layer", "value"),
    )
    def sig_layers(run_id: str | None, current: int | None) -> tuple:
        if not run_id:
            return [], None
        n = runs.get(run_id).config.model.lstm.num_layers
        values = list(range(n + 1))
        return (
            [{"label": layer_label(i), "value": i} for i in values],
            current if current in values else n,
        )

    @app.callback(
        Output("sig-table", "data"),
        Output("sig-table", "columns"),
        Output("sig-map", "children"),
        Output("sig-verdict", "children"),
        Output("sig-timing", "children"),
        Input("run-select", "value"),
        Input("sig-layer", "value"),
        Input("sig-k", "value"),
        Input("sig-bins", "value"),
        Input("sig-color", "value"),
        Input("tabs", "value"),
    )
    @_safe(5, 3)
    def signatures_view(
        run_id: str | None,
        layer: int | None,
        k: Any,
        bins_text: str,
        color: str,
        tab: str = "",
    ) -> tuple:
        if tab != "signatures" or not run_id or layer is None:
            raise dash.exceptions.PreventUpdate
        try:
            k_int = int(k)
        except (TypeError, ValueError):
            raise UserError("k must be a whole number from 2 to 12") from None
        if not 2 <= k_int <= 12:
            raise UserError(f"k must be from 2 to 12, got {k}")
        bins = A.parse_bins(bins_text)
        run = runs.get(run_id)
        sample = A.signature_sample(run)
        t0 = time.perf_counter()
        table, labels, stages = A.recluster(sample, k_int, bins, run.config.seed)
        verdict = A.separation_verdict(
            table, run.config.signatures.separation_metric, run.config.signatures.tolerance
        )
        from pdmlens.signatures.cluster import stage_names

        order = stage_names(bins)
        xy = A.project_2d(sample.test[int(layer)])
        shown = stages if color == "stage" else labels[int(layer)]
        fig = F.signature_map(
            xy,
            np.asarray(shown),
            color,
            order,
            f"{layer_label(int(layer))}: signatures of {len(xy)} evaluated windows (PCA)",
        )
        seconds = time.perf_counter() - t0
        cols = ["name", "k", "purity", "nmi", "ari", "probe_accuracy", "majority_baseline"]
        out = table[cols].copy()
        for c in cols[2:]:
            out[c] = out[c].astype(float).round(3)
        columns = [{"name": c.replace("_", " "), "id": c} for c in cols]
        timing = (
            f"k-means with k={k_int} and probes on {len(sample.train[0])} training and "
            f"{len(sample.test[0])} evaluated windows, every layer: {seconds:.2f} s."
        )
        return out.to_dict("records"), columns, _plot("sig-map", fig), verdict, timing

    # ------------------------------------------------------------------ a new fault

    @app.callback(
        Output("nf-modes", "options"),
        Output("nf-modes", "value"),
        Output("nf-message", "children"),
        Input("run-select", "value"),
    )
    @_safe(3, 2)
    def nf_options(run_id: str | None) -> tuple:
        if not run_id:
            raise dash.exceptions.PreventUpdate
        modes = A.unseen_fault_modes(runs.get(run_id))
        if not modes:
            return (
                [],
                [],
                html.Div(
                    "This run was trained on every fault mode it has (or on real data), so "
                    "there is no unseen simulated fault to show it. Launch a simulated run with "
                    "fewer fault modes kept to see one.",
                    style=NOTE_STYLE,
                ),
            )
        opts = [{"label": f" unseen fault mode {m}", "value": m} for m in modes]
        return opts, modes[:1], ""

    @app.callback(
        Output("nf-table", "data"),
        Output("nf-table", "columns"),
        Output("nf-graphs", "children"),
        Input("run-select", "value"),
        Input("nf-modes", "value"),
        Input("tabs", "value"),
    )
    @_safe(3, 2)
    def nf_view(run_id: str | None, modes: list[int] | None, tab: str = "") -> tuple:
        if tab != "newfault":
            raise dash.exceptions.PreventUpdate
        if not run_id or not modes:
            return [], [], ""
        res = A.new_fault(runs.get(run_id), modes)
        table = res.table.copy()
        cols = ["name", "auroc", "threshold", "detection_rate", "false_alarm_rate"]
        out = table[cols].copy()
        for c in cols[1:]:
            out[c] = out[c].astype(float).round(3)
        graphs: list[Any] = []
        detect = table["detection_rate"].to_numpy(float)
        false_alarm = table["false_alarm_rate"].to_numpy(float)
        i_best = int(np.argmax(detect))
        best = table.index[i_best]
        graphs.append(
            html.Div(
                f"{len(modes)} unseen mode(s), {res.n_new} new windows: "
                f"{layer_label(best)} detects the most "
                f"({detect[i_best]:.0%} of new windows flagged, "
                f"{false_alarm[i_best]:.0%} false alarms on familiar ones).",
                style=NOTE_STYLE,
                id="nf-verdict",
            )
        )
        for layer in table.index:
            graphs.append(
                dcc.Graph(
                    figure=F.novelty_histograms(
                        res.scores[layer],
                        float(table.loc[layer, "threshold"]),
                        layer_label(layer),
                        f"new fault mode(s) {', '.join(map(str, modes))}",
                    )
                )
            )
            if layer in res.units:
                u = res.units[layer]
                only = u[u["only_new"]]
                graphs.append(
                    html.P(
                        f"{layer_label(layer)}: units firing only on the new fault: "
                        + (", ".join(f"unit {int(x)}" for x in only["unit"]) or "none")
                        + " (on in ≥50 % of new windows, ≤5 % of familiar ones)."
                    )
                )
                graphs.append(
                    dash_table.DataTable(  # type: ignore[attr-defined]
                        data=u.assign(
                            only_new=u["only_new"].map({True: "yes", False: "no"})
                        ).to_dict("records"),
                        columns=[{"name": c.replace("_", " "), "id": c} for c in u.columns],
                        style_cell={"fontSize": 12, "padding": "2px 6px"},
                    )
                )
        return (
            out.to_dict("records"),
            [{"name": c.replace("_", " "), "id": c} for c in cols],
            graphs,
        )

    # ------------------------------------------------------------------ launch

    @app.callback(
        Output("launch-message", "children"),
        Output("launch-poll", "disabled"),
        Input("launch-button", "n_clicks"),
        State("launch-dataset", "value"),
        State("launch-path", "value"),
        State("launch-window", "value"),
        State("launch-hidden", "value"),
        State("launch-epochs", "value"),
        State("launch-seed", "value"),
        State("launch-modes", "value"),
        prevent_initial_call=True,
    )
    def launch(
        _n: int,
        ds: str,
        path: str,
        window: Any,
        hidden: Any,
        epochs: Any,
        seed: Any,
        modes: list[int],
    ) -> tuple:
        form = {
            "dataset": ds,
            "cmapss_path": path,
            "window": window,
            "hidden": hidden,
            "epochs": epochs,
            "seed": seed,
            "fault_modes": modes,
        }
        try:
            job = launcher.start(form_overrides(form))
        except ValueError as exc:
            return html.Div(f"Not started: {exc}", className="error", style=ERROR_STYLE), no_update
        return html.Div(f"Run {job.id} started: {' '.join(job.overrides)}", style=NOTE_STYLE), False

    @app.callback(
        Output("launch-jobs", "children"),
        Output("runs-version", "data"),
        Output("launch-poll", "disabled", allow_duplicate=True),
        Input("launch-poll", "n_intervals"),
        State("runs-version", "data"),
        prevent_initial_call=True,
    )
    def poll(_n: int, version: int) -> tuple:
        rows = []
        finished = 0
        for job in launcher.jobs:
            status = job.status
            if status == "running":
                detail = job.progress()
            elif status == "finished":
                finished += 1
                rid = job.run_id()
                detail = f"MLflow run {rid} — now in the run list" if rid else "done"
            else:
                finished += 1
                detail = job.error()
            rows.append(
                html.Li(
                    f"run {job.id}: {status} · {detail}",
                    id=f"job-{job.id}",
                    className=f"job job-{status.split()[0]}",
                )
            )
        running = any(j.status == "running" for j in launcher.jobs)
        new_version = finished if finished != version else no_update
        return html.Ul(rows), new_version, not running

    return app, launcher


def _scored_label(row: pd.Series, run_id: str) -> str:
    when = row["start_time"].strftime("%Y-%m-%d %H:%M")
    if row["training_run"] == run_id:
        by = "this run's models"
    elif row["training_run"]:
        by = f"models of run {row['training_run'][:8]}"
    else:
        by = row["models"] or "models not recorded"
    return (
        f"scored {when} with {by} · {row['split'] or '?'} split · {row['units_scored']} "
        f"machines · {row['alerts_act']} act, {row['alerts_watch']} watch, "
        f"{row['units_novel']} novel"
    )


def _scored_sentence(table: pd.DataFrame) -> str:
    act = table[table["alert"] == "act"]
    watch = table[table["alert"] == "watch"]
    novel = table[table["novelty"] != "familiar"]
    parts = [f"{len(table)} machines scored."]
    if len(act):
        parts.append(f"{len(act)} to act on: {', '.join(act['machine'].head(8))}.")
    else:
        parts.append("None to act on.")
    if len(watch):
        parts.append(f"{len(watch)} to watch: {', '.join(watch['machine'].head(8))}.")
    if len(novel):
        parts.append(
            f"{len(novel)} unlike anything the model trained on: "
            + ", ".join(f"{r.machine} ({r.novelty})" for r in novel.head(8).itertuples())
            + "."
        )
    return " ".join(parts)


def _fleet_sentence(table: pd.DataFrame, horizon: float) -> str:
    act = table[table["alert"] == "act"]
    watch = table[table["alert"] == "watch"]
    disagree = table[table["disagreement"] > horizon]
    parts = [f"{len(table)} machines."]
    if len(act):
        low = np.minimum(act["lstm_rul"].to_numpy(float), act["forest_rul"].to_numpy(float))
        names = ", ".join(
            f"{m} ({v:.0f})" for m, v in list(zip(act["machine"], low, strict=True))[:8]
        )
        parts.append(f"{len(act)} to act on (predicted RUL at most {horizon:g} cycles): {names}.")
    else:
        parts.append(f"None predicted to fail within {horizon:g} cycles.")
    if len(watch):
        parts.append(f"{len(watch)} to watch (at most {2 * horizon:g}).")
    if len(disagree):
        parts.append(
            f"The two models disagree by more than {horizon:g} cycles on {len(disagree)}: "
            + ", ".join(disagree["machine"].head(8))
            + "."
        )
    return " ".join(parts)
