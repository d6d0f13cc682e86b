-- siprox migration 4 (PostgreSQL): OpenSIPS's `location` table (usrloc, OpenSIPS 3.x
-- schema, table version 1013), where `[usrloc] working_mode_preset` keeps the
-- registrations (docs/usrloc.md). `expires` is an absolute Unix time (0: permanent),
-- `cflags` the branch flag names, comma-separated. IF NOT EXISTS keeps a table already
-- provisioned for OpenSIPS; the two siprox columns are then missing and must be added by
-- hand (see docs/database.md).
--
-- siprox adds two columns:
--   reg_id        RFC 5626 reg-id of the binding (0: none); OpenSIPS keeps it in memory only.
--   siprox_stamp  when the row was last written, in milliseconds of the database's clock;
--                 `sql-only` nodes read the rows changed since their last look by it.

CREATE TABLE IF NOT EXISTS location (
    contact_id BIGINT PRIMARY KEY NOT NULL,
    username VARCHAR(64) NOT NULL DEFAULT '',
    domain VARCHAR(64) DEFAULT NULL,
    contact TEXT NOT NULL,
    received VARCHAR(255) DEFAULT NULL,
    path VARCHAR(255) DEFAULT NULL,
    expires INTEGER NOT NULL,
    q REAL NOT NULL DEFAULT 1.0,
    callid VARCHAR(255) NOT NULL DEFAULT 'Default-Call-ID',
    cseq INTEGER NOT NULL DEFAULT 13,
    last_modified TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT '1900-01-01 00:00:01',
    flags INTEGER NOT NULL DEFAULT 0,
    cflags VARCHAR(255) DEFAULT NULL,
    user_agent VARCHAR(255) NOT NULL DEFAULT '',
    socket VARCHAR(64) DEFAULT NULL,
    methods INTEGER DEFAULT NULL,
    sip_instance VARCHAR(255) DEFAULT NULL,
    kv_store TEXT DEFAULT NULL,
    attr VARCHAR(255) DEFAULT NULL,
    reg_id INTEGER NOT NULL DEFAULT 0,
    siprox_stamp BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS location_stamp_idx ON location (siprox_stamp);

INSERT INTO version (table_name, table_version)
    SELECT 'location', 1013
    WHERE NOT EXISTS (SELECT 1 FROM version WHERE table_name = 'location');
