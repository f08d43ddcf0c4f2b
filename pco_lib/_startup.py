"""Import-time settings for pco's own processes: the report runner and the ``pco`` command (through
:mod:`pco_lib.report`) and the test processes (``-p pco_lib._startup`` in pyproject's pytest options, loaded
before nbval imports nbformat).

jsonschema (imported by nbformat, papermill and nbconvert) imports rfc3987_syntax when it is installed (the
"format-nongpl" extra Jupyter asks for), and that builds ~38 Earley parsers at import: 2.6 s of CPU at the
start of every process (python-jsonschema/jsonschema#1428, unfixed in 4.26). It only checks the "iri"
formats, which no notebook schema uses, so jsonschema is told it is absent.
"""

import sys

if "jsonschema" not in sys.modules:
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]
