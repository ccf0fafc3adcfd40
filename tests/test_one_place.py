"""Rules the architecture states, checked on the source (docs/ARCHITECTURE.md, "Who owns
what"): each concern is spelled in one module, so a change is made in one place.

- the task: no comparison of a task name outside ``pdmlens/task.py`` (ask the ``Task``);
- the models' file names: only ``pdmlens/results.py`` spells ``lstm.pt`` / ``forest.joblib``;
- thread counts: only ``pdmlens/runtime/`` calls threadpoolctl or ``torch.set_num_threads``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("src", "pipelines", "benchmarks")

RULES = {
    "task name compared outside task.py": (
        re.compile(r"""task\s*[!=]=\s*["']|["'](rul|horizon)["']\s*[!=]=\s*\S*task"""),
        ("src/pdmlens/task.py",),
    ),
    "model file name spelled outside results.py": (
        re.compile(r"""["'](lstm\.pt|forest\.joblib)["']"""),
        ("src/pdmlens/results.py",),
    ),
    "thread count changed outside runtime/": (
        re.compile(r"threadpool_limits|set_num_threads\("),
        ("src/pdmlens/runtime/",),
    ),
}


def offenders(pattern: re.Pattern[str], allowed: tuple[str, ...]) -> list[str]:
    """``file:line: text`` of every line whose code (the part before a ``#``) matches
    ``pattern``, in the scanned folders outside ``allowed``."""
    found = []
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel.startswith(allowed):
                continue
            for n, line in enumerate(path.read_text().splitlines(), start=1):
                code = line.split("#", 1)[0]
                if pattern.search(code):
                    found.append(f"{rel}:{n}: {line.strip()}")
    return found


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_concern_is_spelled_in_one_place(rule: str) -> None:
    pattern, allowed = RULES[rule]
    assert offenders(pattern, allowed) == [], rule


@pytest.mark.parametrize(
    ("rule", "line"),
    [
        ("task name compared outside task.py", 'if cfg.model.task == "horizon":'),
        ("task name compared outside task.py", "    if task != 'rul':"),
        ("model file name spelled outside results.py", 'est.save(d / "lstm.pt")'),
        ("thread count changed outside runtime/", "    torch.set_num_threads(4)"),
        ("thread count changed outside runtime/", "with threadpool_limits(1):"),
    ],
)
def test_the_rules_catch_what_they_forbid(rule: str, line: str) -> None:
    assert RULES[rule][0].search(line)
