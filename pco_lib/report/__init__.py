"""Presentation and running: report parameters (:mod:`.params`), what a notebook calls to show and record
its headline numbers (:mod:`.notebook`), the Papermill runner (:mod:`.runner`), HTML export (:mod:`.html`),
the index of runs (:mod:`.index`), schedule files (:mod:`.schedule`) and the house style of charts
(:mod:`.plots`, imported as ``from pco_lib.report import plots``).
"""

from .. import _startup  # noqa: F401  (before nbformat: see there)
from .formats import LABELS, p_value, styled  # noqa: F401
from .html import (  # noqa: F401
    TEMPLATES,
    export_html,
)
from .index import (  # noqa: F401
    latest_good_run,
    list_runs,
    write_index,
)
from .notebook import (  # noqa: F401
    RESULT_DIGITS,
    RESULT_MIME,
    callout,
    collect_results,
    details,
    note,
    record,
    record_headlines,
    summary_box,
    verdict_banner,
    write_csv,
)
from .params import (  # noqa: F401
    BASE_TYPES,
    FALSE_WORDS,
    NONE_WORDS,
    TRUE_WORDS,
    Parameter,
    ParameterError,
    notebook_parameters,
    parse_parameters_source,
    resolve,
)
from .runner import (  # noqa: F401
    DEFAULT_NOTEBOOKS,
    REPO_ROOT,
    VERSIONED_PACKAGES,
    ReportError,
    RunResult,
    list_reports,
    notebooks_dir,
    report_notebook,
    report_parameters,
    report_title,
    run_report,
)
from .schedule import (  # noqa: F401
    ScheduledRun,
    read_schedule,
)
