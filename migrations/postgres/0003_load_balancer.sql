-- siprox migration 3 (PostgreSQL): the load_balancer table (OpenSIPS 3.x schema, table
-- version 3). IF NOT EXISTS: a database already provisioned for OpenSIPS keeps its rows.

CREATE TABLE IF NOT EXISTS load_balancer (
    id SERIAL PRIMARY KEY NOT NULL,
    group_id INTEGER NOT NULL DEFAULT 0,
    dst_uri VARCHAR(128) NOT NULL,
    resources VARCHAR(255) NOT NULL,
    probe_mode INTEGER NOT NULL DEFAULT 0,
    attrs VARCHAR(255) DEFAULT NULL,
    description VARCHAR(128) DEFAULT NULL
);

CREATE INDEX IF NOT EXISTS load_balancer_dsturi_idx ON load_balancer (dst_uri);

INSERT INTO version (table_name, table_version)
    SELECT 'load_balancer', 3
    WHERE NOT EXISTS (SELECT 1 FROM version WHERE table_name = 'load_balancer');
