"""The data layer: the canonical tables (:mod:`.model`), reading them through Ibis (:mod:`.source`), the
engine summaries several reports share (:mod:`.summaries`), validation (:mod:`.checks`), the synthetic sample
business (:mod:`.sample`), the privacy rules (:mod:`.privacy`) and the currency money is written in
(:mod:`.currencies`).

``from pco_lib import data; source = data.connect("data/sample")`` is the way in (``data.connect("mapping.yml")``
reads a raw export through a mapping file, :mod:`.mapping`); ``checks``, ``sample`` and ``privacy`` are imported
as submodules where they are needed.
"""

from .currencies import currency, money, money_label, set_currency  # noqa: F401
from .mapping import MappedSource, connect_mapping, is_mapping_file, read_mapping  # noqa: F401  (registers .yml)
from .model import (  # noqa: F401
    BOOL,
    FILE_SUFFIXES,
    FLOAT,
    ID,
    INT,
    STRING,
    TABLES,
    TIMESTAMP,
    Column,
    Table,
)
from .source import (  # noqa: F401
    CONNECTION_PREFIX,
    MISSING,
    DataError,
    DataSource,
    FileProblem,
    calendar_day,
    connect,
    connection_from_environment,
    latest_timestamp,
    raw_relation,
    table_file,
)
from .summaries import (  # noqa: F401
    ACTIVITIES,
    DAY_SECONDS,
    activity_table,
    contractual_lifetimes,
    noncontractual_lifetimes,
    observed_period,
    table_overview,
)
