-- Seed 002's farm, partitioned, as the dispatcher table (plain INSERTs: SQLite, PostgreSQL,
-- MySQL/MariaDB; create the tables first with `siprox migrate -c siprox.toml`).
-- Within a set, a higher priority comes first: algorithm 8 (route.rhai) takes the first
-- active destination, so a lower-priority row is a spare used only while the rows above
-- it are down.

-- Set 1, the shared farm: every call that is neither a tenant's nor a conference, hashed on
-- the Call-ID over both.
INSERT INTO dispatcher (setid, destination, state, probe_mode, weight, priority, description) VALUES (1, 'sip:10.0.0.11:5060', 0, 0, '1', 0, 'fs1');
INSERT INTO dispatcher (setid, destination, state, probe_mode, weight, priority, description) VALUES (1, 'sip:10.0.0.12:5060', 0, 0, '1', 0, 'fs2');

-- Set 2, conferences (extensions 3000-3999): conf1 gets all of them; fs2 of the shared farm
-- is its failover ("you can put one of the active machines of group 1 as last in this group").
INSERT INTO dispatcher (setid, destination, state, probe_mode, weight, priority, description) VALUES (2, 'sip:10.0.0.21:5060', 0, 0, '1', 10, 'conf1');
INSERT INTO dispatcher (setid, destination, state, probe_mode, weight, priority, description) VALUES (2, 'sip:10.0.0.12:5060', 0, 0, '1', 0, 'fs2, conference spare');

-- One set per tenant domain (tenant_set() in route.rhai): the tenant's own machine, and the
-- spare machine shared by every tenant, "ready to take the role of the failed machine".
INSERT INTO dispatcher (setid, destination, state, probe_mode, weight, priority, description) VALUES (10, 'sip:10.0.0.31:5060', 0, 0, '1', 10, 'tenant-a.example.com');
INSERT INTO dispatcher (setid, destination, state, probe_mode, weight, priority, description) VALUES (10, 'sip:10.0.0.39:5060', 0, 0, '1', 0, 'spare');
INSERT INTO dispatcher (setid, destination, state, probe_mode, weight, priority, description) VALUES (20, 'sip:10.0.0.32:5060', 0, 0, '1', 10, 'tenant-b.example.com');
INSERT INTO dispatcher (setid, destination, state, probe_mode, weight, priority, description) VALUES (20, 'sip:10.0.0.39:5060', 0, 0, '1', 0, 'spare');
