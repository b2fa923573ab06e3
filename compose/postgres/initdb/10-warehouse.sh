#!/bin/bash
# Runs once, on an empty data volume (docker-entrypoint-initdb.d). Creates the role the pipeline logs in as
# and the warehouse database it owns, so the pipeline needs no superuser: it creates its own schemas
# (the replicated tables and the mssql2pg control schema) inside `dw`.
#
# The password travels as a psql variable and reaches SQL as :'pw', which psql quotes as a literal: any
# character is safe. Names come from the environment (compose.yaml) and are quoted the same way (:"name").
set -euo pipefail

warehouse_user="${WAREHOUSE_USER:-warehouse}"
warehouse_db="${WAREHOUSE_DB:-dw}"
password="$(cat "${WAREHOUSE_PASSWORD_FILE:-/run/secrets/warehouse_password}")"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
  -v role="$warehouse_user" -v db="$warehouse_db" -v pw="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'pw';
CREATE DATABASE :"db" OWNER :"role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"role";
SQL
echo "postgres init: role ${warehouse_user} owns database ${warehouse_db}"
