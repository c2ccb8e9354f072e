-- Runs once, on the first start of an empty PostgreSQL data volume (docker-compose.yaml
-- mounts it into /docker-entrypoint-initdb.d): the database of trailhouse's own tables
-- (TRAILHOUSE_DB_URL), beside Airflow's. trailhouse creates its tables there on first use.
CREATE DATABASE trailhouse;
