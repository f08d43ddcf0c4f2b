"""Customer lifetime value: the engine summaries (:mod:`.engine`), holdout validation (:mod:`.validation`),
value segments, the simple formula and subscription value (:mod:`.value`) and the report's readout
(:mod:`.readout`). The models themselves live in :mod:`pco_lib.stats.models`.
"""

from .engine import (  # noqa: F401
    holdout_expr,
    holdout_table,
    rfm_expr,
    rfm_table,
)
from .readout import (  # noqa: F401
    MODELS,
    TIME_UNITS,
    ClvReadout,
    analyze,
    calibration_parameters,
    data_coverage,
    headlines,
    model_parameters,
    summary_points,
    validation_period,
)
from .validation import (  # noqa: F401
    HoldoutValidation,
    validate_holdout,
)
from .value import (  # noqa: F401
    PERIOD_DAYS,
    SimpleClv,
    ValueSegments,
    simple_clv,
    subscription_value,
    value_segments,
)
