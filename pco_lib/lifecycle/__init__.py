"""Lifecycle segments: stages and transitions (:mod:`.stages`), RFM segments and the top-segment profile
(:mod:`.rfm`), the lookalike model (:mod:`.lookalike`), re-engagement timing and lead conversion
(:mod:`.timing`), and the report's readout (:mod:`.readout`).
"""

from .common import (  # noqa: F401
    ALL,
    DAY_SECONDS,
    SegmentError,
)
from .lookalike import (  # noqa: F401
    Lookalike,
    calibration_table,
    fit_lookalike,
    lookalike,
    lookalike_frame,
)
from .readout import (  # noqa: F401
    LifecycleReadout,
    analyze,
    headlines,
    summary_points,
)
from .rfm import (  # noqa: F401
    RFM_GRID,
    RFM_SEGMENTS,
    SegmentProfile,
    early_behaviour_expr,
    measure_label,
    profile_top_segment,
    rfm_expr,
    rfm_grid,
    rfm_segment,
    rfm_segments,
    rfm_table,
    segment_profile,
    summarize_profile,
)
from .stages import (  # noqa: F401
    GONE,
    NOT_YET,
    STAGES,
    StageRules,
    Transitions,
    customer_stages,
    stage_counts,
    stage_counts_by,
    stage_expr,
    stage_transitions,
)
from .timing import (  # noqa: F401
    LeadTiming,
    contact_window,
    contact_window_expr,
    gap_summary,
    lead_conversion,
    lead_conversion_table,
    lead_expr,
    lead_time_counts,
    lead_time_to_convert,
    repurchase_gap_counts,
    repurchase_gap_expr,
)
