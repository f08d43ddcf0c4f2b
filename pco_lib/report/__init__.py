"""Presentation and running: report parameters (:mod:`.params`), what a notebook calls to show and record
its headline numbers (:mod:`.notebook`), the Papermill runner (:mod:`.runner`), HTML export (:mod:`.html`),
the index of runs (:mod:`.index`), schedule files (:mod:`.schedule`) and the house style of charts
(:mod:`.plots`, imported as ``from pco_lib.report import plots``).
"""

import sys

# jsonschema (imported by nbformat, papermill and nbconvert) imports rfc3987_syntax when it is installed (the
# "format-nongpl" extra Jupyter asks for), and that builds ~38 Earley parsers at import: 2.6 s of CPU at the
# start of every pco command and runner (python-jsonschema/jsonschema#1428, unfixed in 4.26). It only checks
# the "iri" formats, which no notebook schema uses, so jsonschema is told it is absent.
if "jsonschema" not in sys.modules:
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]

from .formats import LABELS, p_value, styled  # noqa: E402, F401
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
