-- siprox migration 3 (MySQL / MariaDB): the load_balancer table (OpenSIPS 3.x schema,
-- table version 3). IF NOT EXISTS: a database already provisioned for OpenSIPS keeps its
-- rows (MySQL has no CREATE INDEX IF NOT EXISTS: the index is declared with the table).

CREATE TABLE IF NOT EXISTS load_balancer (
    id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    group_id INT UNSIGNED NOT NULL DEFAULT 0,
    dst_uri CHAR(128) NOT NULL,
    resources CHAR(255) NOT NULL,
    probe_mode INT UNSIGNED NOT NULL DEFAULT 0,
    attrs CHAR(255) DEFAULT NULL,
    description CHAR(128) DEFAULT NULL,
    INDEX dsturi_idx (dst_uri)
) ENGINE=InnoDB;

INSERT INTO version (table_name, table_version)
    SELECT 'load_balancer', 3 FROM DUAL
    WHERE NOT EXISTS (SELECT 1 FROM version WHERE table_name = 'load_balancer');
