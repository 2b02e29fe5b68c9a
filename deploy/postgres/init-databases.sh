#!/bin/bash
# Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d).
# One server, three databases, two roles that cannot reach each other's data:
#   temporal            Temporal's persistence       owner: temporal
#   temporal_visibility Temporal's visibility store  owner: temporal
#   visitflow           VisitFlow's read model       owner: visitflow
set -euo pipefail
: "${TEMPORAL_DB_PASSWORD:?TEMPORAL_DB_PASSWORD must be set}"
: "${VISITFLOW_DB_PASSWORD:?VISITFLOW_DB_PASSWORD must be set}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v temporal_pw="$TEMPORAL_DB_PASSWORD" -v visitflow_pw="$VISITFLOW_DB_PASSWORD" <<'SQL'
CREATE ROLE temporal LOGIN PASSWORD :'temporal_pw';
CREATE ROLE visitflow LOGIN PASSWORD :'visitflow_pw';
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
CREATE DATABASE visitflow OWNER visitflow;
REVOKE ALL ON DATABASE temporal, temporal_visibility, visitflow FROM PUBLIC;
SQL
echo "created databases temporal, temporal_visibility (role temporal) and visitflow (role visitflow)"
