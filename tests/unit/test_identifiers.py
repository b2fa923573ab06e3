from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mssql2pg.identifiers import qualified, quote_ident


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("orders", '"orders"'),
        ("Order Lines", '"Order Lines"'),
        ('evil"; DROP TABLE x; --', '"evil""; DROP TABLE x; --"'),
        ("[brackets]", '"[brackets]"'),
        ("żółw", '"żółw"'),
    ],
)
def test_quote_ident(name: str, quoted: str) -> None:
    assert quote_ident(name) == quoted


def test_qualified() -> None:
    assert qualified("dbo", 'a"b') == '"dbo"."a""b"'


@pytest.mark.parametrize("bad", ["", "a\x00b", "x" * 64, "\ud800"])
def test_rejects_names_postgres_cannot_hold(bad: str) -> None:
    with pytest.raises(ValueError, match=r"identifier|name|Unicode"):
        quote_ident(bad)


@given(
    st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=20)
)
def test_quoted_name_round_trips(name: str) -> None:
    quoted = quote_ident(name)

    assert quoted.startswith('"')
    assert quoted.endswith('"')
    assert quoted[1:-1].replace('""', '"') == name
