-- siprox migration 2 (PostgreSQL): OpenSIPS's `dialog` table (OpenSIPS 3.x schema, table
-- version 12), where db_mode 1-3 keep the confirmed dialogs (docs/dialog.md,
-- "Persistence"). Every column siprox does not write has a default, so its shorter rows
-- fit; IF NOT EXISTS keeps a table already provisioned for OpenSIPS as it is.

CREATE TABLE IF NOT EXISTS dialog (
    dlg_id BIGINT PRIMARY KEY NOT NULL,
    callid VARCHAR(255) NOT NULL DEFAULT '',
    from_uri VARCHAR(255) NOT NULL DEFAULT '',
    from_tag VARCHAR(64) NOT NULL DEFAULT '',
    to_uri VARCHAR(255) NOT NULL DEFAULT '',
    to_tag VARCHAR(64) NOT NULL DEFAULT '',
    mangled_from_uri VARCHAR(255) DEFAULT NULL,
    mangled_to_uri VARCHAR(255) DEFAULT NULL,
    caller_cseq VARCHAR(11) NOT NULL DEFAULT '0',
    callee_cseq VARCHAR(11) NOT NULL DEFAULT '0',
    caller_ping_cseq INTEGER NOT NULL DEFAULT 0,
    callee_ping_cseq INTEGER NOT NULL DEFAULT 0,
    caller_route_set TEXT DEFAULT NULL,
    callee_route_set TEXT DEFAULT NULL,
    caller_contact VARCHAR(255) DEFAULT NULL,
    callee_contact VARCHAR(255) DEFAULT NULL,
    caller_sock VARCHAR(64) NOT NULL DEFAULT '',
    callee_sock VARCHAR(64) NOT NULL DEFAULT '',
    state INTEGER NOT NULL DEFAULT 0,
    start_time INTEGER NOT NULL DEFAULT 0,
    timeout INTEGER NOT NULL DEFAULT 0,
    vars TEXT DEFAULT NULL,
    profiles TEXT DEFAULT NULL,
    script_flags VARCHAR(255) DEFAULT NULL,
    module_flags INTEGER NOT NULL DEFAULT 0,
    flags INTEGER NOT NULL DEFAULT 0,
    rt_on_answer VARCHAR(64) DEFAULT NULL,
    rt_on_timeout VARCHAR(64) DEFAULT NULL,
    rt_on_hangup VARCHAR(64) DEFAULT NULL
);

-- Operators look dialogs up by Call-ID (dlg_list, troubleshooting).
CREATE INDEX IF NOT EXISTS dialog_callid_idx ON dialog (callid);

INSERT INTO version (table_name, table_version)
    SELECT 'dialog', 12
    WHERE NOT EXISTS (SELECT 1 FROM version WHERE table_name = 'dialog');
