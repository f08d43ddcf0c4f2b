"""Privacy rules shared by every report: small groups are suppressed, never shown as numbers."""

from __future__ import annotations

import pandas as pd

DEFAULT_MIN_CELL_SIZE = 10


def check_min_cell_size(value, error: type[Exception] = ValueError) -> int:
    """``min_cell_size`` as an int, or ``error`` when it is not a whole number ≥ 1."""
    import numpy as np

    if not (isinstance(value, int | np.integer) and value >= 1):
        raise error(f"min_cell_size must be a whole number ≥ 1, not {value!r}")
    return int(value)


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


SALT_VARIABLE = "PCO_PSEUDONYM_SALT"
ID_COLUMNS = ("customer_id", "lead_id", "email")


class PseudonymError(ValueError):
    """Pseudonymization was asked for without a salt."""


def pseudonym_salt() -> bytes:
    """The secret salt from the environment (never a report parameter, never logged)."""
    import os

    salt = os.environ.get(SALT_VARIABLE, "")
    if len(salt) < 16:
        raise PseudonymError(f"--pseudonymize needs a secret salt of at least 16 characters in the environment "
                             f"variable {SALT_VARIABLE}")
    return salt.encode()


def pseudonymize(values: pd.Series, salt: bytes) -> pd.Series:
    """Replace identifiers by a salted hash: HMAC-SHA256(salt, id), first 16 hex digits. The same id and salt
    always give the same pseudonym (so lists can be joined across runs); without the salt it cannot be
    reversed or recomputed from a list of ids."""
    import hashlib
    import hmac

    def one(v):
        return v if pd.isna(v) else hmac.new(salt, str(v).encode(), hashlib.sha256).hexdigest()[:16]

    return values.map(one)


def pseudonymize_csv_files(folder, salt: bytes) -> list[str]:
    """Pseudonymize the identifier columns of every CSV file in ``folder`` in place (files written by the
    run itself, never input data); return the names of the files changed."""
    from pathlib import Path

    changed = []
    for path in sorted(Path(folder).glob("*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        ids = [c for c in ID_COLUMNS if c in frame.columns]
        if ids:
            for col in ids:
                frame[col] = pseudonymize(frame[col].replace("", pd.NA), salt)
            frame.to_csv(path, index=False)
            changed.append(path.name)
    return changed
