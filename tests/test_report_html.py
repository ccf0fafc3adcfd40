"""The self-contained HTML report: nothing fetched from elsewhere, figures embedded as PNG,
tables, headline numbers first, text escaped."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from pdmlens.report.html import (  # noqa: E402
    EXPLAIN,
    MAX_TABLE_ROWS,
    Section,
    figure_to_data_uri,
    find_external_references,
    format_value,
    render_report,
)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _parse(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def _figure(w: float = 3.0, h: float = 2.0):
    fig, ax = plt.subplots(figsize=(w, h))
    ax.plot(np.arange(10), np.arange(10) ** 0.5)
    return fig


@pytest.fixture(scope="module")
def page() -> str:
    figs = [_figure(), _figure(4, 2)]
    png = base64.b64decode(figure_to_data_uri(_figure()).split(",", 1)[1])
    for f in plt.get_fignums():
        plt.close(f)
    table = pd.DataFrame({"unit": ["u1", "u2"], "rul": [12.345678, np.nan], "n": [1200, 7]})
    sections = [
        Section(
            "Predictions <vs> truth",
            EXPLAIN["predictions"] + "\n\nRun: http://mlflow.local:5000/#/runs/abc",
            figures=[("Predicted against true RUL", figs[0]), figs[1]],
            tables=[("Worst units", table)],
            metrics={"RMSE": 14.23456, "units": 100},
        ),
        Section(
            "Sensors",
            "Read it like this:\n- longer bar = more important\n- <b>bold</b> is not HTML",
            figures=[png],
            tables=[pd.DataFrame({"v": np.arange(MAX_TABLE_ROWS + 5)})],
            metrics={"agreement": 0.8123},
        ),
    ]
    return render_report(
        sections, title="Run <1>", subtitle="dataset cmapss-FD001", footer="made by pdmlens"
    )


def test_no_external_references(page):
    assert find_external_references(page) == []
    # an independent, blunter check
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    # one inline script (contents links, figure zoom), nothing loaded from elsewhere
    assert page.lower().count("<script") == 1 and "<script>" in page
    assert "@import" not in page and "url(" not in page
    for tag, attrs in _parse(page):
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("data:image/png;base64,", "#")), (tag, value[:40])
    # a URL in the text stays plain text
    assert "http://mlflow.local:5000/#/runs/abc" in page


def test_detector_catches_external_references():
    for bad in (
        '<script src="https://cdn.example/x.js"></script>',
        "<img src='//cdn.example/x.png'>",
        '<link href="http://fonts.example/css" rel=stylesheet>',
        "<style>body{background:url( 'https://x/y.png')}</style>",
        "<style>@import 'x.css';</style>",
    ):
        assert find_external_references(bad), bad
    assert find_external_references('<a href="#s1">x</a><img src="data:image/png;base64,AA">') == []


def test_figures_are_embedded_png(page):
    imgs = [attrs for tag, attrs in _parse(page) if tag == "img"]
    assert len(imgs) == 3
    for attrs in imgs:
        data = base64.b64decode(attrs["src"].split(",", 1)[1])
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width = int.from_bytes(data[16:20], "big")
        assert 100 < width < 600  # 3-4 inch figures at 100 dpi, trimmed
    assert imgs[0]["alt"] == "Predicted against true RUL"
    assert "<figcaption>Predicted against true RUL</figcaption>" in page


def test_headline_first_then_sections_with_toc(page):
    head = page.index('class="cards headline"')
    assert head < page.index("<section")
    headline = page[head : page.index("</header>")]
    assert re.findall(r'class="v">([^<]*)<', headline) == ["14.23", "100", "0.8123"]
    ids = [attrs["id"] for tag, attrs in _parse(page) if tag == "section"]
    links = [attrs["href"] for tag, attrs in _parse(page) if tag == "a"]
    assert links == [f"#{i}" for i in ids]
    assert ids == ["s1-predictions-vs-truth", "s2-sensors"]
    assert "position:sticky" in page


def test_text_and_tables_are_escaped_and_formatted(page):
    assert "<title>Run &lt;1&gt;</title>" in page
    assert "Predictions &lt;vs&gt; truth" in page
    assert "&lt;b&gt;bold&lt;/b&gt; is not HTML" in page
    assert "<li>longer bar = more important</li>" in page
    assert "<td>12.35</td>" in page and "<td>–</td>" in page
    assert "<td>1200</td>" in page
    assert f"(first {MAX_TABLE_ROWS} of {MAX_TABLE_ROWS + 5} rows)" in page
    assert f"<td>{MAX_TABLE_ROWS - 1}</td>" in page
    assert f"<td>{MAX_TABLE_ROWS}</td>" not in page
    assert page.count("<p>") >= 3


def test_explicit_headline_and_value_formatting():
    page = render_report([Section("A", metrics={"x": 1.0})], headline={"Units at risk": 3})
    head = page[page.index('class="cards headline"') : page.index("</header>")]
    assert re.findall(r'class="k">([^<]*)<', head) == ["Units at risk"]
    assert [format_value(v) for v in (None, True, 12345, 0.000123456, 2.5e6, float("nan"))] == [
        "–",
        "yes",
        "12,345",
        "0.0001235",
        "2,500,000",
        "–",
    ]
    assert render_report([]).startswith("<!DOCTYPE html>")


def test_bad_figures_are_refused():
    with pytest.raises(TypeError):
        figure_to_data_uri("not a figure")
    with pytest.raises(ValueError):
        figure_to_data_uri(b"GIF89a")
