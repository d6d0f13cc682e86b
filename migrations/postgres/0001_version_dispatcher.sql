-- siprox migration 1 (PostgreSQL): OpenSIPS's `version` table and the dispatcher table
-- (OpenSIPS 3.x schema, table version 9). IF NOT EXISTS: a database already provisioned
-- for OpenSIPS keeps its tables and rows.

CREATE TABLE IF NOT EXISTS version (
    table_name VARCHAR(32) NOT NULL,
    table_version INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT version_t_name_idx UNIQUE (table_name)
);

CREATE TABLE IF NOT EXISTS dispatcher (
    id SERIAL PRIMARY KEY NOT NULL,
    setid INTEGER NOT NULL DEFAULT 0,
    destination VARCHAR(192) NOT NULL DEFAULT '',
    socket VARCHAR(128) DEFAULT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    probe_mode INTEGER NOT NULL DEFAULT 0,
    weight VARCHAR(64) NOT NULL DEFAULT '1',
    priority INTEGER NOT NULL DEFAULT 0,
    attrs VARCHAR(128) DEFAULT NULL,
    description VARCHAR(64) DEFAULT NULL
);

INSERT INTO version (table_name, table_version)
    SELECT 'dispatcher', 9
    WHERE NOT EXISTS (SELECT 1 FROM version WHERE table_name = 'dispatcher');
