"""``tools/sql_lint.py`` catches planted string-built SQL and nested dollar quoting, accepts the quoted forms,
and finds nothing in the code as it is (issue 15 point 8)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tools import sql_lint


def _py(tmp_path: Path, code: str) -> list[str]:
    path = tmp_path / "planted.py"
    path.write_text(code, encoding="utf-8")
    return [f.message for f in sql_lint.check([path])]


def _sql(tmp_path: Path, code: str) -> list[str]:
    path = tmp_path / "planted.sql"
    path.write_text(code, encoding="utf-8")
    return [f.message for f in sql_lint.check([path])]


@pytest.mark.parametrize(
    "code",
    [
        'def f(name):\n    return f"SELECT * FROM {name}"\n',
        'def f(name):\n    return "DELETE FROM " + name\n',
        'def f(name):\n    return "SELECT * FROM %s WHERE x = 1" % name\n',
        'def f(name):\n    return "DROP TABLE {} CASCADE".format(name)\n',
        'def f(name):\n    q = name.strip()\n    return f"UPDATE {q} SET a = 1"\n',
        'def f(names):\n    cols = ", ".join(names)\n    return f"SELECT {cols} FROM t"\n',
        'def f(name):\n    return f"SELECT * FROM {name}"  # sql-lint:\n',  # an exemption needs a reason
    ],
    ids=["f-string", "concatenation", "percent", "format", "local", "join", "exemption-without-reason"],
)
def test_string_built_sql_is_flagged(tmp_path: Path, code: str) -> None:
    [message] = _py(tmp_path, code)
    assert "SQL text built from" in message


@pytest.mark.parametrize(
    "code",
    [
        "from mssql2pg.identifiers import quote_ident\n"
        'def f(name):\n    return f"SELECT * FROM {quote_ident(name)} WHERE id = :id"\n',
        "from mssql2pg.identifiers import quote_ident\n"
        'def f(name):\n    q = quote_ident(name)\n    return f"DROP TABLE {q}"\n',
        "from mssql2pg.identifiers import quote_ident\n"
        'def f(names):\n    cols = ", ".join(quote_ident(n) for n in names)\n    return f"SELECT {cols} FROM t"\n',
        "from mssql2pg.identifiers import quote_ident\n"
        "def helper(n):\n    return quote_ident(n) + '.x'\n"
        'def f(name):\n    return f"SELECT * FROM {helper(name)}"\n',
        'TABLE = "t"\ndef f():\n    return f"SELECT * FROM {TABLE}"\n',
        'def f(kind):\n    return f"SELECT * FROM t"  # sql-lint: no interpolation at all\n',
        'def f(name):\n    return f"{name} is not a table"\n',  # prose, not SQL
        'def f(name):\n    return f"SELECT * FROM {name}"  # sql-lint: name is one of three constants\n',
    ],
    ids=["quoted", "quoted-local", "quoted-join", "quoting-helper", "constant", "plain", "prose", "exempt"],
)
def test_quoted_names_bound_values_and_explained_lines_pass(tmp_path: Path, code: str) -> None:
    assert _py(tmp_path, code) == []


def test_an_execute_of_a_concatenated_string_is_flagged(tmp_path: Path) -> None:
    [message] = _sql(
        tmp_path,
        "CREATE FUNCTION f(t text) RETURNS void LANGUAGE plpgsql AS $$\n"
        "BEGIN\n  EXECUTE 'DROP TABLE ' || t;\nEND $$;\n",
    )
    assert "not built by format()" in message


def test_a_format_template_built_with_concatenation_is_flagged(tmp_path: Path) -> None:
    [message] = _sql(
        tmp_path,
        "CREATE FUNCTION f(t text) RETURNS void LANGUAGE plpgsql AS $$\n"
        "BEGIN\n  EXECUTE format('DROP TABLE ' || t || ' CASCADE');\nEND $$;\n",
    )
    assert "template built from strings" in message


def test_nested_dollar_quoting_in_an_executed_template_is_flagged(tmp_path: Path) -> None:
    """The issue's injection: a body spliced between ``$b$`` tags ends at the first ``$b$`` inside a name."""
    [message] = _sql(
        tmp_path,
        "CREATE FUNCTION f(fn text, tbl text) RETURNS void LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        "  EXECUTE format('CREATE FUNCTION %I() RETURNS trigger LANGUAGE plpgsql AS $b$ BEGIN "
        "INSERT INTO %I VALUES (1); RETURN NULL; END $b$', fn, tbl);\n"
        "END $$;\n",
    )
    assert "dollar quote inside an EXECUTEd template" in message


def test_bodies_passed_with_percent_l_and_trigger_execute_function_pass(tmp_path: Path) -> None:
    assert (
        _sql(
            tmp_path,
            "CREATE FUNCTION f(fn text, body text, src regclass) RETURNS void LANGUAGE plpgsql AS $$\n"
            "BEGIN\n"
            "  -- EXECUTE 'this is a comment' || fn;\n"
            "  EXECUTE format('CREATE FUNCTION cdc.%I() RETURNS trigger LANGUAGE plpgsql AS %L', fn, body);\n"
            "  EXECUTE format('CREATE TRIGGER t AFTER INSERT ON %s FOR EACH ROW '\n"
            "                 'EXECUTE FUNCTION cdc.%I()', src, fn);\n"
            "  EXECUTE format('DELETE FROM cdc.%I WHERE \"__$start_lsn\" < $1', fn) USING body;\n"
            "END $$;\n"
            "CREATE TRIGGER x AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f();\n",
        )
        == []
    )


def test_the_code_as_it_is_has_no_finding(capsys: pytest.CaptureFixture[str]) -> None:
    assert sql_lint.main([]) == 0
    assert "0 findings" in capsys.readouterr().out
