"""The GRANT statements ``mssql2pg check`` prints (issue 15 point 5) are valid in the source's own dialect and
quote hostile names, so that running the printed text grants exactly the object named and nothing else."""

from __future__ import annotations

from mssql2pg.pipeline.privileges import SourceGrants


def test_sql_server_grants_are_t_sql_with_bracket_quoting() -> None:
    grants = SourceGrants("mssql", "cdc]reader")
    assert grants.cdc_schema() == "GRANT SELECT ON SCHEMA::[cdc] TO [cdc]]reader];"
    assert grants.select_on("dbo", "Order]; DROP TABLE x; --") == (
        "GRANT SELECT ON [dbo].[Order]]; DROP TABLE x; --] TO [cdc]]reader];"
    )


def test_emulator_grants_are_postgresql_with_double_quote_quoting() -> None:
    grants = SourceGrants("postgresql", 'rea"der')
    assert grants.cdc_schema() == (
        'GRANT USAGE ON SCHEMA cdc TO "rea""der"; GRANT SELECT ON ALL TABLES IN SCHEMA cdc TO "rea""der";'
    )
    assert grants.select_on("sales", 'Or"ders') == (
        'GRANT USAGE ON SCHEMA "sales" TO "rea""der"; GRANT SELECT ON "sales"."Or""ders" TO "rea""der";'
    )
