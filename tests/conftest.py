from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory) -> Path:
    """A small sample business (1,500 customers), generated once per test session."""
    from pco_lib.sample import generate_sample

    out = tmp_path_factory.mktemp("data") / "sample"
    generate_sample(out, customers=1500, seed=7, progress=False)
    return out
