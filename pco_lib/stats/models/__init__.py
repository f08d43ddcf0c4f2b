"""Purchase and retention models, one per file, fitted by maximum likelihood on weighted summary rows.

In the lifelines manner: ``fit()`` returns the model, fitted attributes end in ``_``, ``summary`` is a
frame of the estimates with standard errors. :mod:`.base` holds the shared fitter; :mod:`.value` turns a
purchase model and Gamma-Gamma into discounted customer value.
"""

from .base import (  # noqa: F401
    DAYS_PER_MONTH,
    DAYS_PER_YEAR,
    ClvError,
)
from .bgnbd import (  # noqa: F401
    BGNBD,
)
from .gamma_gamma import (  # noqa: F401
    GammaGamma,
)
from .mbgnbd import (  # noqa: F401
    ModifiedBGNBD,
)
from .pareto_nbd import (  # noqa: F401
    ParetoNBD,
)
from .sbg import (  # noqa: F401
    ShiftedBetaGeometric,
)
from .value import (  # noqa: F401
    clv,
    customer_value,
)
