"""A self-contained HTML report: one file, readable offline and inside MLflow's UI.

The MLflow UI shows an HTML artifact in a sandboxed frame and an analyst may e-mail the
file, so the page carries everything itself: inline CSS, figures as base64 PNG data URIs,
tables rendered from DataFrames, no scripts, fonts or images fetched from anywhere. One
small inline script makes it work inside MLflow's frame (a sandboxed iframe on a blob: URL,
where following an in-page link tries to load ``blob:...#id`` and fails): the contents
links scroll with ``scrollIntoView`` instead of navigating, and a click on a figure shows
it full size in an overlay (Escape or a click closes it). Without scripts (a mail reader)
the links still work as plain anchors. Each
section pairs its charts with a few sentences for a reader who is not a programmer (what
the chart shows, how to read it); the headline numbers come first. ``EXPLAIN`` holds such
texts for the standard sections of a pdmlens run.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import pandas as pd

MAX_TABLE_ROWS = 60
FIGURE_DPI = 100

EXPLAIN: dict[str, str] = {
    "predictions": (
        "Each point is one machine in the test set. Left to right: its true remaining life "
        "(how many more cycles it really ran before failing); bottom to top: the model's "
        "estimate. Points on the diagonal are perfect guesses. Points below it are machines "
        "the model expects to fail sooner than they do (a safe mistake); points above it are "
        "late warnings (the costly mistake). RMSE is the typical size of an error, in "
        "cycles: smaller is better."
    ),
    "training": (
        "How the model learned. The lines show the error on the training machines and on "
        "machines held back for checking, epoch after epoch (one epoch = one pass over the "
        "data). Both should fall and then flatten; if the checking line rises while the "
        "training line keeps falling, the model started memorising, and training stopped at "
        "its best point."
    ),
    "sensor_importance": (
        "Which sensors the models rely on. Each bar is a sensor (or 'age', the time since the "
        "machine's record began); the longer the bar, the more that input moved the "
        "predicted remaining life, averaged over many machines and moments. Inputs near the "
        "bottom barely matter to the model."
    ),
    "agreement": (
        "Do the LSTM and the random forest point at the same sensors? The rank correlation "
        "runs from -1 (opposite orders) to 1 (the same order); the overlap counts how many of "
        "each model's top sensors the other also ranks at the top. High agreement makes the "
        "explanation more trustworthy; low agreement means the two models learned different "
        "shortcuts and both deserve a closer look."
    ),
    "faithfulness": (
        "A check that the explanation is honest: we blank out the sensors the explanation "
        "calls most important, one after another, and watch the prediction move. If the "
        "explanation is right, the prediction changes much faster than when sensors are "
        "removed in a random order."
    ),
    "gates": (
        "Inside the LSTM. Each row of the picture is one internal unit (a 'neuron'), each "
        "column a moment in the time window, and the colour how open that unit's gate was: "
        "dark = closed, bright = open. Units that switch on as a machine approaches failure "
        "are the model's alarm bells. 'Saturated' units sit almost always fully open or "
        "fully closed and behave like switches."
    ),
    "signatures": (
        "The LSTM's internal state for each window was grouped into a few clusters of similar "
        "'signatures'. The chart shows how well those clusters line up with the machine's "
        "health stage (healthy, degrading, near failure), layer by layer: a higher score "
        "means that layer cleanly tells healthy machines from dying ones."
    ),
    "novelty": (
        "Does the model notice data unlike what it was trained on? Each window gets a "
        "novelty score (how far its signature lies from everything seen in training). The "
        "threshold is set so that about 5% of familiar data is flagged; the share of "
        "unfamiliar data (another fault type or operating regime) above it shows how reliably "
        "the model can warn that its own prediction should not be trusted."
    ),
}


@dataclass
class Section:
    """One part of the report.

    ``figures``: matplotlib Figures, PNG bytes, or ``(caption, figure)`` pairs; ``tables``:
    DataFrames or ``(caption, DataFrame)`` pairs; ``metrics``: name -> number shown as
    cards; ``text``: plain language, paragraphs separated by a blank line, lines starting
    with ``- `` become a list.
    """

    title: str
    text: str = ""
    figures: list[Any] = field(default_factory=list)
    tables: list[Any] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


_CSS = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,
sans-serif;color:#1d2330;background:#f5f6f8}
.layout{display:grid;grid-template-columns:210px minmax(0,1fr);gap:24px;max-width:1180px;
margin:0 auto;padding:20px}
nav{position:sticky;top:16px;align-self:start;font-size:14px}
nav b{display:block;margin-bottom:6px;color:#5b6475;text-transform:uppercase;font-size:12px}
nav a{display:block;padding:3px 8px;border-left:3px solid #d4d8e0;color:#2b4c7e;
text-decoration:none}
nav a:hover{border-left-color:#2b4c7e;background:#e9edf4}
main{min-width:0}
header h1{margin:0 0 4px;font-size:26px}
header p{margin:0 0 16px;color:#5b6475}
section{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:18px 22px;
margin-bottom:20px}
section h2{margin:0 0 10px;font-size:20px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0 14px}
.card{background:#eef2f8;border-radius:6px;padding:8px 14px;min-width:120px}
.card .v{font-size:21px;font-weight:600}
.card .k{font-size:12px;color:#5b6475}
.headline .card{background:#fff;border:1px solid #e1e4ea}
figure{margin:12px 0}
figure img{max-width:100%;height:auto;border:1px solid #eceef2}
figcaption,.caption{font-size:13px;color:#5b6475;margin:4px 0}
.tablewrap{overflow-x:auto;margin:10px 0}
table.data{border-collapse:collapse;font-size:13px}
table.data th,table.data td{padding:4px 10px;border-bottom:1px solid #e6e8ee;text-align:right}
table.data th{background:#f0f2f6}
footer{color:#5b6475;font-size:12px;margin:10px 0 30px}
figure img{cursor:zoom-in}
#zoom{display:none;position:fixed;inset:0;background:rgba(20,24,32,.85);z-index:10;
overflow:auto;cursor:zoom-out;padding:20px;text-align:center}
#zoom.on{display:block}
#zoom img{max-width:none;background:#fff}
@media (max-width:800px){.layout{grid-template-columns:1fr}nav{position:static}}
@media print{nav{display:none}.layout{display:block}section{break-inside:avoid}}
"""


_SCRIPT = """
(function(){
  document.querySelectorAll('nav a[data-target]').forEach(function(a){
    a.addEventListener('click', function(e){
      var t = document.getElementById(a.getAttribute('data-target'));
      if (t) { e.preventDefault(); t.scrollIntoView({behavior: 'smooth', block: 'start'}); }
    });
  });
  var zoom = document.getElementById('zoom'), big = document.createElement('img');
  zoom.appendChild(big);
  document.querySelectorAll('figure img').forEach(function(img){
    img.addEventListener('click', function(){
      big.src = img.src; big.alt = img.alt; zoom.classList.add('on');
    });
  });
  function close(){ zoom.classList.remove('on'); big.removeAttribute('src'); }
  zoom.addEventListener('click', close);
  document.addEventListener('keydown', function(e){ if (e.key === 'Escape') close(); });
})();
"""


def render_report(
    sections: Sequence[Section],
    title: str = "pdmlens report",
    subtitle: str = "",
    headline: Mapping[str, Any] | None = None,
    footer: str = "",
) -> str:
    """The whole page as one HTML string (UTF-8, no external references).

    ``headline``: the numbers shown first; None = every section's metrics, in order (at
    most 8). ``subtitle``/``footer`` are plain text (e.g. dataset, run id, date).
    """
    if headline is None:
        headline = {}
        for sec in sections:
            for key, value in sec.metrics.items():
                if len(headline) < 8:
                    headline.setdefault(key, value)
    ids = [f"s{i + 1}-{_slug(sec.title)}" for i, sec in enumerate(sections)]
    toc = "".join(
        f'<a href="#{sid}" data-target="{sid}">{_esc(sec.title)}</a>'
        for sid, sec in zip(ids, sections, strict=True)
    )
    body = "".join(_section(sec, sid) for sid, sec in zip(ids, sections, strict=True))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        '<div class="layout">',
        f"<nav><b>Contents</b>{toc}</nav>" if sections else "<nav></nav>",
        "<main><header>",
        f"<h1>{_esc(title)}</h1>",
        f"<p>{_esc(subtitle)}</p>" if subtitle else "",
        f'<div class="cards headline">{_cards(headline)}</div>' if headline else "",
        "</header>",
        body,
        f"<footer>{_esc(footer)}</footer>" if footer else "",
        "</main></div>",
        '<div id="zoom" role="dialog" aria-label="enlarged figure"></div>',
        f"<script>{_SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def figure_to_data_uri(fig: Any, dpi: int = FIGURE_DPI) -> str:
    """A matplotlib Figure (or PNG bytes) as a ``data:image/png;base64,...`` URI."""
    if isinstance(fig, (bytes, bytearray)):
        png = bytes(fig)
        if not png.startswith(b"\x89PNG"):
            raise ValueError("figure bytes are not a PNG image")
    elif hasattr(fig, "savefig"):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        png = buf.getvalue()
    else:
        raise TypeError(f"cannot embed a {type(fig).__name__} as a figure")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


_EXTERNAL = re.compile(
    r"""(?:\b(?:src|href|action|poster|srcset|data)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//)"""
    r"""|(?:url\(\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//)|(?:@import)""",
    re.IGNORECASE,
)


def find_external_references(page: str) -> list[str]:
    """Every place where ``page`` would fetch something from elsewhere (should be none)."""
    return [m.group(0) for m in _EXTERNAL.finditer(page)]


# ----------------------------------------------------------------------------- pieces


def _section(sec: Section, sid: str) -> str:
    out = [f'<section id="{sid}"><h2>{_esc(sec.title)}</h2>']
    if sec.metrics:
        out.append(f'<div class="cards">{_cards(sec.metrics)}</div>')
    out.append(_text(sec.text))
    for item in sec.figures:
        caption, fig = item if isinstance(item, tuple) else ("", item)
        alt = _esc(caption or sec.title)
        cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
        out.append(f'<figure><img alt="{alt}" src="{figure_to_data_uri(fig)}">{cap}</figure>')
    for item in sec.tables:
        caption, df = item if isinstance(item, tuple) else ("", item)
        out.append(_table(df, caption))
    out.append("</section>")
    return "".join(out)


def _text(text: str) -> str:
    """Blank lines separate paragraphs; runs of lines starting with ``- `` are a list."""
    out: list[str] = []
    para: list[str] = []
    items: list[str] = []

    def flush() -> None:
        if para:
            out.append(f"<p>{_esc(' '.join(para))}</p>")
            para.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{_esc(it)}</li>" for it in items) + "</ul>")
            items.clear()

    for raw in text.strip().splitlines():
        line = raw.strip()
        if not line:
            flush()
        elif line.startswith("- "):
            if para:
                flush()
            items.append(line[2:].strip())
        else:
            if items:
                flush()
            para.append(line)
    flush()
    return "".join(out)


def _table(df: pd.DataFrame, caption: str) -> str:
    if not isinstance(df, pd.DataFrame):
        df = pd.DataFrame(df)
    note = ""
    if len(df) > MAX_TABLE_ROWS:
        note = f" (first {MAX_TABLE_ROWS} of {len(df)} rows)"
        df = df.head(MAX_TABLE_ROWS)
    show_index = not isinstance(df.index, pd.RangeIndex)
    table = df.to_html(
        index=show_index,
        border=0,
        classes="data",
        na_rep="–",
        float_format=_fmt_float,
        escape=True,
    )
    cap = f'<p class="caption">{_esc(caption + note)}</p>' if caption or note else ""
    return f'{cap}<div class="tablewrap">{table}</div>'


def _cards(metrics: Mapping[str, Any]) -> str:
    return "".join(
        f'<div class="card"><div class="v">{_esc(format_value(v))}</div>'
        f'<div class="k">{_esc(str(k))}</div></div>'
        for k, v in metrics.items()
    )


def format_value(value: Any) -> str:
    """Numbers for people: 4 significant digits, thousands separators, '–' for missing."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return f"{int(value):,}"
    if isinstance(value, Real):
        return _fmt_float(float(value))
    return str(value)


def _fmt_float(v: float) -> str:
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if v != 0 and abs(v) >= 1e5:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "section"


def _esc(text: str) -> str:
    return html.escape(str(text), quote=True)
