"""Start ``pdmlens run`` from the explorer's Launch form and follow it.

The form's few parameters become ``--set key=value`` overrides on top of the explorer's
base overrides (its store, and whatever ``pdmlens explore --set`` gave); they are checked
with the config schema (:class:`pdmlens.config.RunConfig`) before anything starts, and a
bad value becomes a one-line message per problem, never a traceback. A run is a local
``pdmlens run --json`` process in its own session (so stopping the explorer stops it and
its children); its progress is the last step or epoch line of its log.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pdmlens.config import RunConfig, parse_overrides

PROGRESS = re.compile(
    r"(LSTM (?:refit )?epoch [^\n]*|Task run '([a-z][a-z-]*?)-[0-9a-f]+' - Finished|"
    r"data \S+ ready|evaluated on [^\n]*|signatures: [^\n]*)"
)


def form_overrides(form: dict[str, Any]) -> list[str]:
    """``key=value`` overrides from the Launch form's values (empty fields are left to
    the base config). Raises ValueError with a readable message for a value that is not
    even a number."""
    out: list[str] = []
    dataset = form.get("dataset") or "simulated"
    out.append(f"data.source={dataset}")
    if dataset == "cmapss":
        path = str(form.get("cmapss_path") or "").strip()
        if not path:
            raise ValueError("dataset cmapss: give the folder holding the C-MAPSS files")
        if not Path(path).expanduser().is_dir():
            raise ValueError(f"dataset cmapss: folder {path} not found")
        out += [f"data.path={path}", f"data.subset={form.get('subset') or 'FD001'}"]
    for key, name in (
        ("window", "window.length"),
        ("hidden", "model.lstm.hidden_size"),
        ("epochs", "model.lstm.epochs"),
        ("seed", "seed"),
    ):
        value = form.get(key)
        if value is None or str(value).strip() == "":
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: {value!r} is not a number") from None
        if number != int(number):
            raise ValueError(f"{name}: {value!r} is not a whole number")
        out.append(f"{name}={int(number)}")
    modes = form.get("fault_modes")
    if dataset == "simulated" and modes is not None:
        if len(modes) == 0:
            raise ValueError("fault modes kept: keep at least one fault mode for training")
        out.append(f"data.simulator.fault_mode_subset=[{', '.join(str(int(m)) for m in modes)}]")
    return out


def validate(base: list[str], overrides: list[str]) -> RunConfig:
    """The RunConfig the run will use; ValueError with one line per problem otherwise."""
    try:
        cfg = RunConfig().with_overrides(parse_overrides([*base, *overrides]))
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()))
            lines.append(f"{loc or 'config'}: {err.get('msg', 'invalid')}")
        raise ValueError("; ".join(lines)) from None
    if cfg.window.length < 2:  # the config allows 1; a window needs a before and an after
        raise ValueError("window.length: must be at least 2 cycles")
    return cfg


def pdmlens_command() -> list[str]:
    """The ``pdmlens`` command of this interpreter's environment."""
    exe = Path(sys.executable).parent / "pdmlens"
    if exe.is_file():
        return [str(exe)]
    return [sys.executable, "-c", "from pdmlens.cli import app; app()"]


@dataclass
class Job:
    """One launched run."""

    id: int
    overrides: list[str]
    proc: subprocess.Popen
    log_path: Path
    out_path: Path
    started: float = field(default_factory=time.time)

    @property
    def status(self) -> str:
        code = self.proc.poll()
        if code is None:
            return "running"
        return "finished" if code == 0 else f"failed (exit code {code})"

    def progress(self) -> str:
        """The latest step or epoch line of the run's log."""
        try:
            text = self.log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return "starting"
        found = PROGRESS.findall(text)
        if not found:
            return "starting"
        line, task = found[-1]
        return f"{task} finished" if task else line.strip()

    def error(self) -> str:
        """The run's own error line (``error: ...``) when it failed."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        errors = [ln for ln in text.splitlines() if ln.startswith("error:")]
        return errors[-1] if errors else text.strip().splitlines()[-1:][0] if text.strip() else ""

    def run_id(self) -> str | None:
        import json

        try:
            return str(json.loads(self.out_path.read_text())["mlflow_run_id"])
        except (OSError, ValueError, KeyError):
            return None


class Launcher:
    """Starts runs as child processes; ``stop_all`` ends them and their children."""

    def __init__(self, base: list[str], workdir: str | Path, cwd: str | Path | None = None):
        self.base = list(base)
        self.workdir = Path(workdir)
        self.cwd = Path(cwd) if cwd else Path.cwd()
        self.jobs: list[Job] = []
        self.drop_env: list[str] = []
        """environment variables not passed on to launched runs"""
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, overrides: list[str]) -> Job:
        validate(self.base, overrides)
        with self._lock:
            n = next(self._ids)
            self.workdir.mkdir(parents=True, exist_ok=True)
            log_path = self.workdir / f"launch-{n}.log"
            out_path = self.workdir / f"launch-{n}.json"
            sets = [a for s in [*self.base, *overrides] for a in ("--set", s)]
            with open(log_path, "wb") as log, open(out_path, "wb") as out:
                proc = subprocess.Popen(
                    [*pdmlens_command(), "run", "--json", *sets],
                    stdout=out,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                    cwd=self.cwd,
                    env={k: v for k, v in os.environ.items() if k not in self.drop_env},
                    start_new_session=True,
                )
            job = Job(n, list(overrides), proc, log_path, out_path)
            self.jobs.append(job)
            return job

    def stop_all(self, timeout: float = 10.0) -> None:
        """SIGTERM every running job's process group, then SIGKILL what is left."""
        running = [j for j in self.jobs if j.proc.poll() is None]
        for j in running:
            _signal_group(j.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for j in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                j.proc.wait(max(0.1, deadline - time.monotonic()))
            _signal_group(j.proc.pid, signal.SIGKILL)
            if j.proc.poll() is None:
                j.proc.wait(5)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
