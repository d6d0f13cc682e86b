-- Seed 001's media servers (FreeSWITCH), the addresses its route compared $si with
-- (`$si==10.0.1.100 || $si==10.0.2.100`), as dispatcher set 9. Load into the database of
-- each node (node-x.db and node-y.db). Plain INSERTs: SQLite, PostgreSQL and MySQL/MariaDB.
-- A destination without a port matches requests from any port of that address.
INSERT INTO dispatcher (setid, destination, state, probe_mode, weight, priority, description) VALUES (9, 'sip:10.0.1.100', 0, 0, '1', 0, 'FreeSWITCH 1');
INSERT INTO dispatcher (setid, destination, state, probe_mode, weight, priority, description) VALUES (9, 'sip:10.0.2.100', 0, 0, '1', 0, 'FreeSWITCH 2');
