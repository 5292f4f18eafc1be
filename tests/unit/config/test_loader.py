"""Tests for the key tables of exporter.config.loader: each row fills the dataclass field
of its name, the required rows are the fields without a default, and the summary shows
every field."""

from __future__ import annotations

import dataclasses

import pytest

from exporter.config import AccountConfig, Config, Filters, MetricsConfig, parse, summary
from exporter.config.loader import ACCOUNT, FILTERS, METRICS, TOP_LEVEL, Key

# Each key table beside the dataclass it fills.
TABLES = pytest.mark.parametrize(
    ("table", "model"),
    [
        (TOP_LEVEL, Config),
        (ACCOUNT, AccountConfig),
        (FILTERS, Filters),
        (METRICS, MetricsConfig),
    ],
)


@TABLES
def test_a_table_has_one_row_per_field_in_field_order(table: tuple[Key, ...], model: type) -> None:
    # all_regions is no key: `regions: "*"` sets it.
    derived = {"all_regions"}
    fields = [field.name for field in dataclasses.fields(model) if field.name not in derived]
    assert [key.name for key in table] == fields


@TABLES
def test_required_rows_are_the_fields_without_a_default(
    table: tuple[Key, ...], model: type
) -> None:
    no_default = [
        field.name for field in dataclasses.fields(model) if field.default is dataclasses.MISSING
    ]
    assert [key.name for key in table if key.missing] == no_default


def test_the_summary_shows_every_field() -> None:
    text = summary(parse("accounts:\n  - name: prod\n    regions: [cn-hangzhou]\n", {}))
    for model in (Config, AccountConfig):
        for field in dataclasses.fields(model):
            if field.name != "all_regions":  # shown as `regions: *`
                assert f"{field.name}: " in text, field.name
