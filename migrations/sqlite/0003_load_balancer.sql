-- siprox migration 3 (SQLite): the load_balancer table (OpenSIPS 3.x schema, table
-- version 3). IF NOT EXISTS: a database already provisioned for OpenSIPS keeps its rows.

CREATE TABLE IF NOT EXISTS load_balancer (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    group_id INTEGER NOT NULL DEFAULT 0,
    dst_uri CHAR(128) NOT NULL,
    resources CHAR(255) NOT NULL,
    probe_mode INTEGER NOT NULL DEFAULT 0,
    attrs CHAR(255) DEFAULT NULL,
    description CHAR(128) DEFAULT NULL
);

CREATE INDEX IF NOT EXISTS load_balancer_dsturi_idx ON load_balancer (dst_uri);

INSERT INTO version (table_name, table_version)
    SELECT 'load_balancer', 3
    WHERE NOT EXISTS (SELECT 1 FROM version WHERE table_name = 'load_balancer');
