"""``pdmlens explore``: a local web app (Dash) over the MLflow store of pdmlens runs.

- :mod:`.rundata`: one run's recorded tables, config, models and data (plain objects).
- :mod:`.analysis`: pure functions behind the views (fleet table, clustering, novelty).
- :mod:`.figures`: the plotly figures.
- :mod:`.launch`: start a ``pdmlens run`` from the page and follow it.
- :mod:`.app`: the Dash layout and callbacks; :mod:`.server`: serving with a clean stop.
"""
