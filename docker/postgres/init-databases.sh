#!/usr/bin/env bash
# Creates one role and one database per user of the PostgreSQL server in docker/compose.yaml:
#   airflow  Airflow's metadata database
#   source   the SQL source the ingest DAG extracts from (connection ctpipe_source)
#   mlflow   MLflow's backend store (runs, model registry)
#   feast    Feast's SQL registry
#   ctpipe   the pipeline's own state: the index of validated keys (CTPIPE_KEY_INDEX_URL)
# The postgres image runs this once, when its data volume is empty (docker-entrypoint-initdb.d).
# Passwords come from the container's environment (docker/.env), never from this file.
set -euo pipefail

create_database() {
  local name="$1" password="$2"
  # psql variables keep the password out of the SQL text and quote it correctly.
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set=name="$name" --set=password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
}

create_database airflow "${AIRFLOW_DB_PASSWORD:?}"
create_database source "${SOURCE_DB_PASSWORD:?}"
create_database mlflow "${MLFLOW_DB_PASSWORD:?}"
create_database feast "${FEAST_DB_PASSWORD:?}"
create_database ctpipe "${CTPIPE_DB_PASSWORD:?}"
