import pytest

from pco_lib.report.params import Parameter, ParameterError, parse_parameters_source, resolve

SOURCE = '''data_dir: str = "../data/sample"  # folder with the tables
months: int = 24  # months to show
alpha: float = 0.05  # significance level
sequential: bool = False  # always-valid intervals
metrics: list[str] = ["repeat_30d", "revenue_30d"]  # metrics to read
segment: str | None = None  # optional split
'''


def test_parse_reads_name_type_default_and_help():
    params = {p.name: p for p in parse_parameters_source(SOURCE)}
    assert list(params) == ["data_dir", "months", "alpha", "sequential", "metrics", "segment"]
    assert params["months"] == Parameter("months", "int", 24, "months to show")
    assert params["metrics"].default == ["repeat_30d", "revenue_30d"]
    assert params["segment"].optional and params["segment"].default is None


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("months", "6", 6),
        ("alpha", "0.1", 0.1),
        ("alpha", "1", 1.0),
        ("sequential", "true", True),
        ("sequential", "no", False),
        ("metrics", "a, b", ["a", "b"]),
        ("metrics", '["a"]', ["a"]),
        ("segment", "none", None),
        ("segment", "channel", "channel"),
        ("data_dir", "/x", "/x"),
    ],
)
def test_command_line_strings_are_converted_by_type(name, text, expected):
    params = parse_parameters_source(SOURCE)
    assert resolve(params, {name: text}) == {name: expected}


@pytest.mark.parametrize(
    "given, message",
    [
        ({"month": "6"}, "has no parameter 'month'"),
        ({"months": "six"}, "'six' is not a valid int"),
        ({"months": 2.5}, "is not a valid int"),
        ({"months": True}, "is not a valid int"),
        ({"sequential": "maybe"}, "is not a valid bool"),
        ({"alpha": "x"}, "is not a valid float"),
        ({"metrics": 3}, "expected a list"),
        ({"data_dir": None}, "cannot be empty"),
    ],
)
def test_wrong_names_and_types_are_errors(given, message):
    with pytest.raises(ParameterError, match=message):
        resolve(parse_parameters_source(SOURCE), given)


@pytest.mark.parametrize(
    "source, message",
    [
        ("x = 1", "name: type = default"),
        ("x: dict = {}", "unsupported type"),
        ("x: int = 'a'", "not a valid int"),
        ("x: int = len('a')", "must be a literal"),
        ("x: int = (", "not valid Python"),
    ],
)
def test_bad_parameters_cells_are_rejected(source, message):
    with pytest.raises(ParameterError, match=message):
        parse_parameters_source(source)
