#!/bin/bash
# One-shot initialisation of the demo source, run by the `mssql-init` service (same image as `mssql`, which
# ships sqlcmd). Compose re-runs it on every `up`, so every step in the SQL scripts is idempotent.
#
# sqlcmd flags: -C trusts the server's self-signed certificate (ODBC 18 encrypts by default), -b exits
# non-zero on the first SQL error so a failure stops the stack instead of starting a pipeline with no CDC,
# -I turns QUOTED_IDENTIFIER on (sqlcmd's default is off).
set -euo pipefail

SQLCMD="${SQLCMD:-/opt/mssql-tools18/bin/sqlcmd}"
host="${MSSQL_HOST:-mssql}"
sa_password_file="${MSSQL_SA_PASSWORD_FILE:-/run/secrets/mssql_sa_password}"
reader_password_file="${CDC_READER_PASSWORD_FILE:-/run/secrets/cdc_reader_password}"

# sqlcmd reads the password from the environment: it stays off the command line.
SQLCMDPASSWORD="$(cat "$sa_password_file")"
export SQLCMDPASSWORD
reader_password="$(cat "$reader_password_file")"

run_sql() {
  "$SQLCMD" -C -S "$host" -U sa -b -I -l 30 "$@"
}

echo "mssql-init: creating database shop, its tables, and enabling CDC"
run_sql -i /init/01-shop.sql

echo "mssql-init: creating the least-privilege login cdc_reader"
# The password becomes an N'…' literal in 02-cdc-reader.sql: double any single quote.
run_sql -v CDC_READER_PASSWORD="${reader_password//\'/\'\'}" -i /init/02-cdc-reader.sql

echo "mssql-init: done: CDC captures dbo.customers, dbo.orders, dbo.order_lines in database shop"
