"""Names pdmlens gives scoring runs and scoring models in MLflow (tags, experiments).

A light module (no mlflow, no torch) so that readers of the store, such as the explorer's
:mod:`pdmlens.tracking.explorer_reader`, share the names with the writers in
:mod:`pdmlens.tracking.scoring` without loading the scoring stack.
"""

from __future__ import annotations

SCORING_TAG = "pdmlens.scoring_bundle"
"""on a logged model: it carries a scoring bundle (takes raw tables)"""
KIND_TAG = "pdmlens.kind"
"""on a logged scoring model: ``lstm`` / ``forest``; on a scoring run: :data:`SCORING_RUN`"""
SCORING_RUN = "scoring"
MODEL_TAG_PREFIX = "pdmlens.model."
"""a scoring run's tags naming the models it used (``pdmlens.model.<name>`` = version/URI)"""
TRAINING_RUN_KEY = "training_run"
"""in a scoring run's model tags (``pdmlens.model.training_run``): the pipeline run that
trained the models used (the explorer lists a run's scored data by it)"""
SPLIT_TAG = "pdmlens.split"
"""on a scoring run: the split of the source it scored"""


def score_experiment(dataset: str) -> str:
    """The experiment of ``dataset``'s scoring runs."""
    return f"pdmlens-score-{dataset}"
