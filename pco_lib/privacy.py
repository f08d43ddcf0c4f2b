"""Privacy rules shared by every report: small groups are suppressed, never shown as numbers."""

from __future__ import annotations

import pandas as pd

DEFAULT_MIN_CELL_SIZE = 10


def suppress_small_cells(
    frame: pd.DataFrame, count_column: str, min_cell_size: int = DEFAULT_MIN_CELL_SIZE,
    value_columns: list[str] | None = None,
) -> pd.DataFrame:
    """Blank out rows describing fewer than ``min_cell_size`` customers.

    ``count_column`` and ``value_columns`` (default: every numeric column) become missing in those rows,
    and a boolean ``suppressed`` column says which rows were hidden. The input is not modified.
    """
    if min_cell_size < 1:
        raise ValueError("min_cell_size must be at least 1")
    out = frame.copy()
    small = out[count_column] < min_cell_size
    columns = value_columns if value_columns is not None else list(out.select_dtypes("number").columns)
    for col in set(columns) | {count_column}:
        out[col] = out[col].astype("float64").where(~small)
    out["suppressed"] = small.to_numpy()
    return out
