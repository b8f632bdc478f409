"""Docker's prune filters as the daemon reads them (boxd._prune): pure, no root needed."""

from __future__ import annotations

import datetime

import pytest

from boxd._prune import PruneFilter, parse, parse_time

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "when"),
    [
        ("1700000000.5", 1700000000.5),
        ("10m", NOW - 600),
        ("1h30m", NOW - 5400),
        ("1.5h", NOW - 5400),
        ("300ms", NOW - 0.3),
        ("2024-05-01T10:00:00Z", 1714557600.0),
        ("2024-05-01T12:00:00+02:00", 1714557600.0),
        ("2024-05-01", datetime.datetime(2024, 5, 1).timestamp()),  # local, as Docker's
    ],
)
def test_until_takes_dockers_times(text: str, when: float) -> None:
    assert parse_time(text, NOW) == pytest.approx(when)


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"until": ["soon"]}, "invalid until 'soon'"),
        ({"until": ["10x"]}, "invalid until '10x'"),
        ({"until": ["1h", "2h"]}, "more than one until"),
        ({"label": ["=v"]}, "invalid filter 'label==v'"),
        ({"dangling": ["true"]}, "invalid filter 'dangling'"),
    ],
)
def test_bad_filters_are_named(filters: dict[str, list[str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(filters, NOW)


def test_labels_and_until_select_together() -> None:
    only = parse({"until": ["1h"], "label": ["a", "b=2"], "label!": ["keep"]}, NOW)
    assert only == PruneFilter(until=NOW - 3600, labels=("a", "b=2"), not_labels=("keep",))
    old = NOW - 7200
    assert only.selects(old, {"a": "", "b": "2"})
    assert not only.selects(NOW, {"a": "", "b": "2"})  # too young
    assert not only.selects(old, {"a": "", "b": "3"})  # b has another value
    assert not only.selects(old, {"a": "", "b": "2", "keep": "x"})
    assert PruneFilter().selects(NOW, {})
