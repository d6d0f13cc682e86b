-- siprox migration 2 (MySQL / MariaDB): OpenSIPS's `dialog` table (OpenSIPS 3.x schema,
-- table version 12), where db_mode 1-3 keep the confirmed dialogs (docs/dialog.md,
-- "Persistence"). Every column siprox does not write has a default, so its shorter rows
-- fit; IF NOT EXISTS keeps a table already provisioned for OpenSIPS as it is. The Call-ID
-- index is declared inside the table: MySQL has no CREATE INDEX IF NOT EXISTS.

CREATE TABLE IF NOT EXISTS dialog (
    dlg_id BIGINT UNSIGNED PRIMARY KEY NOT NULL,
    callid CHAR(255) NOT NULL DEFAULT '',
    from_uri CHAR(255) NOT NULL DEFAULT '',
    from_tag CHAR(64) NOT NULL DEFAULT '',
    to_uri CHAR(255) NOT NULL DEFAULT '',
    to_tag CHAR(64) NOT NULL DEFAULT '',
    mangled_from_uri CHAR(255) DEFAULT NULL,
    mangled_to_uri CHAR(255) DEFAULT NULL,
    caller_cseq CHAR(11) NOT NULL DEFAULT '0',
    callee_cseq CHAR(11) NOT NULL DEFAULT '0',
    caller_ping_cseq INT UNSIGNED NOT NULL DEFAULT 0,
    callee_ping_cseq INT UNSIGNED NOT NULL DEFAULT 0,
    caller_route_set TEXT DEFAULT NULL,
    callee_route_set TEXT DEFAULT NULL,
    caller_contact CHAR(255) DEFAULT NULL,
    callee_contact CHAR(255) DEFAULT NULL,
    caller_sock CHAR(64) NOT NULL DEFAULT '',
    callee_sock CHAR(64) NOT NULL DEFAULT '',
    state INT UNSIGNED NOT NULL DEFAULT 0,
    start_time INT UNSIGNED NOT NULL DEFAULT 0,
    timeout INT UNSIGNED NOT NULL DEFAULT 0,
    vars TEXT DEFAULT NULL,
    profiles TEXT DEFAULT NULL,
    script_flags CHAR(255) DEFAULT NULL,
    module_flags INT UNSIGNED NOT NULL DEFAULT 0,
    flags INT UNSIGNED NOT NULL DEFAULT 0,
    rt_on_answer CHAR(64) DEFAULT NULL,
    rt_on_timeout CHAR(64) DEFAULT NULL,
    rt_on_hangup CHAR(64) DEFAULT NULL,
    KEY dialog_callid_idx (callid)
) ENGINE=InnoDB;

INSERT INTO version (table_name, table_version)
    SELECT 'dialog', 12 FROM DUAL
    WHERE NOT EXISTS (SELECT 1 FROM version WHERE table_name = 'dialog');
