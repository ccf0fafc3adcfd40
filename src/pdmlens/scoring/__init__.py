"""Score new, unlabelled data with a finished run's models (issue 14).

``build_bundle`` packs a run's preparation, models, SHAP background and novelty
calibration into one folder; ``ScoringBundle.load`` reads it; ``score_fleet`` turns raw
readings into one row per unit: remaining life, alert level, the sensors that drive it,
and whether the model has seen anything like it.
"""

from pdmlens.scoring.bundle import ScoringBundle, build_bundle
from pdmlens.scoring.score import ALERT_RULE, KIND_RULE, ScoreTable, alert_levels, score_fleet

__all__ = [
    "ALERT_RULE",
    "KIND_RULE",
    "ScoreTable",
    "ScoringBundle",
    "alert_levels",
    "build_bundle",
    "score_fleet",
]
