-- siprox migration 4 (SQLite): OpenSIPS's `location` table (usrloc, OpenSIPS 3.x schema,
-- table version 1013), where `[usrloc] working_mode_preset` keeps the registrations
-- (docs/usrloc.md). `expires` is an absolute Unix time (0: permanent), `cflags` the branch
-- flag names, comma-separated. IF NOT EXISTS keeps a table already provisioned for
-- OpenSIPS; the two siprox columns are then missing and must be added by hand (see
-- docs/database.md).
--
-- siprox adds two columns:
--   reg_id        RFC 5626 reg-id of the binding (0: none); OpenSIPS keeps it in memory only.
--   siprox_stamp  when the row was last written, in milliseconds of the database's clock;
--                 `sql-only` nodes read the rows changed since their last look by it.

CREATE TABLE IF NOT EXISTS location (
    contact_id INTEGER PRIMARY KEY NOT NULL,
    username CHAR(64) NOT NULL DEFAULT '',
    domain CHAR(64) DEFAULT NULL,
    contact TEXT NOT NULL,
    received CHAR(255) DEFAULT NULL,
    path CHAR(255) DEFAULT NULL,
    expires INTEGER NOT NULL,
    q FLOAT(10,2) NOT NULL DEFAULT 1.0,
    callid CHAR(255) NOT NULL DEFAULT 'Default-Call-ID',
    cseq INTEGER NOT NULL DEFAULT 13,
    last_modified DATETIME NOT NULL DEFAULT '1900-01-01 00:00:01',
    flags INTEGER NOT NULL DEFAULT 0,
    cflags CHAR(255) DEFAULT NULL,
    user_agent CHAR(255) NOT NULL DEFAULT '',
    socket CHAR(64) DEFAULT NULL,
    methods INTEGER DEFAULT NULL,
    sip_instance CHAR(255) DEFAULT NULL,
    kv_store TEXT DEFAULT NULL,
    attr CHAR(255) DEFAULT NULL,
    reg_id INTEGER NOT NULL DEFAULT 0,
    siprox_stamp BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS location_stamp_idx ON location (siprox_stamp);

INSERT INTO version (table_name, table_version)
    SELECT 'location', 1013
    WHERE NOT EXISTS (SELECT 1 FROM version WHERE table_name = 'location');
