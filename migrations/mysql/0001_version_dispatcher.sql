-- siprox migration 1 (MySQL / MariaDB): OpenSIPS's `version` table and the dispatcher
-- table (OpenSIPS 3.x schema, table version 9). IF NOT EXISTS: a database already
-- provisioned for OpenSIPS keeps its tables and rows.

CREATE TABLE IF NOT EXISTS version (
    table_name CHAR(32) NOT NULL,
    table_version INT NOT NULL DEFAULT 0,
    CONSTRAINT t_name_idx UNIQUE (table_name)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS dispatcher (
    id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    setid INT NOT NULL DEFAULT 0,
    destination CHAR(192) NOT NULL DEFAULT '',
    socket CHAR(128) DEFAULT NULL,
    state INT NOT NULL DEFAULT 0,
    probe_mode INT NOT NULL DEFAULT 0,
    weight CHAR(64) NOT NULL DEFAULT '1',
    priority INT NOT NULL DEFAULT 0,
    attrs CHAR(128) DEFAULT NULL,
    description CHAR(64) DEFAULT NULL
) ENGINE=InnoDB;

INSERT INTO version (table_name, table_version)
    SELECT 'dispatcher', 9 FROM DUAL
    WHERE NOT EXISTS (SELECT 1 FROM version WHERE table_name = 'dispatcher');
