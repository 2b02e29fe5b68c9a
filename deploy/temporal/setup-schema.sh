#!/bin/sh
# One-shot (temporalio/admin-tools): create or upgrade Temporal's schemas in PostgreSQL.
# The databases themselves are created by deploy/postgres/init-databases.sh. Safe to run on every start:
# setup-schema -v 0.0 only initialises an empty database, update-schema applies what is missing.
set -eu
: "${SQL_PASSWORD:?SQL_PASSWORD must be set}"  # read by temporal-sql-tool
SQL="temporal-sql-tool --plugin postgres12 --ep ${POSTGRES_SEEDS:-postgresql} -p ${DB_PORT:-5432} -u ${POSTGRES_USER:-temporal}"
SCHEMA=/etc/temporal/schema/postgresql/v12

$SQL --db "${DBNAME:-temporal}" setup-schema -v 0.0
$SQL --db "${DBNAME:-temporal}" update-schema -d "$SCHEMA/temporal/versioned"
$SQL --db "${VISIBILITY_DBNAME:-temporal_visibility}" setup-schema -v 0.0
$SQL --db "${VISIBILITY_DBNAME:-temporal_visibility}" update-schema -d "$SCHEMA/visibility/versioned"
echo "Temporal schemas are up to date"
