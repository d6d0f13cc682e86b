-- siprox migration 5 (MySQL / MariaDB): the subscriber table of auth_db (OpenSIPS 3.x
-- schema, table version 8). IF NOT EXISTS: a database already provisioned for OpenSIPS
-- keeps its rows (the indexes are declared with the table: MySQL has no CREATE INDEX IF
-- NOT EXISTS).

CREATE TABLE IF NOT EXISTS subscriber (
    id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    username CHAR(64) NOT NULL DEFAULT '',
    domain CHAR(64) NOT NULL DEFAULT '',
    password CHAR(25) NOT NULL DEFAULT '',
    email_address CHAR(64) DEFAULT NULL,
    ha1 CHAR(64) NOT NULL DEFAULT '',
    ha1_sha256 CHAR(64) NOT NULL DEFAULT '',
    ha1_sha512t256 CHAR(64) NOT NULL DEFAULT '',
    rpid CHAR(255) DEFAULT NULL,
    CONSTRAINT account_idx UNIQUE (username, domain),
    INDEX username_idx (username)
) ENGINE=InnoDB;

INSERT INTO version (table_name, table_version)
    SELECT 'subscriber', 8 FROM DUAL
    WHERE NOT EXISTS (SELECT 1 FROM version WHERE table_name = 'subscriber');
