-- Seed 000's provisioning, as plain INSERTs that run on SQLite, PostgreSQL and MySQL/MariaDB
-- (create the tables first: `siprox migrate -c siprox.toml`).
--
-- The dispatcher set 1 that REGISTERs are spread over, from
--   opensipsctl dispatcher addgw 1 sip:100.100.100.103 0 'FS1'   (… FS2, FS3, FS4)
-- OpenSIPS 1.7's `flags` 0 is 3.x's `probe_mode` 0; `ds_probing_mode = 1` probes them all anyway.
INSERT INTO dispatcher (setid, destination, state, probe_mode, weight, priority, description) VALUES (1, 'sip:100.100.100.103', 0, 0, '1', 0, 'FS1');
INSERT INTO dispatcher (setid, destination, state, probe_mode, weight, priority, description) VALUES (1, 'sip:100.100.100.104', 0, 0, '1', 0, 'FS2');
INSERT INTO dispatcher (setid, destination, state, probe_mode, weight, priority, description) VALUES (1, 'sip:100.100.100.105', 0, 0, '1', 0, 'FS3');
INSERT INTO dispatcher (setid, destination, state, probe_mode, weight, priority, description) VALUES (1, 'sip:100.100.100.106', 0, 0, '1', 0, 'FS4');

-- The load_balancer group 1 that INVITEs go to, from the seed's
--   insert into load_balancer (group_id, dst_uri, resources, description) values (1,'sip:100.1…
-- (the write-up cuts the lines off before the capacities). The `pstn` capacity is the number
-- of channels each host takes; here fs1/fs2 take 60 and the smaller fs3/fs4 30, so relative
-- mode (load_balance(1, "pstn", 1)) fills them 2:2:1:1. probe_mode 2: always probed with
-- OPTIONS (probing_interval), so a host that stops answering is disabled and re-enabled.
INSERT INTO load_balancer (group_id, dst_uri, resources, probe_mode, description) VALUES (1, 'sip:100.100.100.103', 'pstn=60', 2, 'FS1');
INSERT INTO load_balancer (group_id, dst_uri, resources, probe_mode, description) VALUES (1, 'sip:100.100.100.104', 'pstn=60', 2, 'FS2');
INSERT INTO load_balancer (group_id, dst_uri, resources, probe_mode, description) VALUES (1, 'sip:100.100.100.105', 'pstn=30', 2, 'FS3');
INSERT INTO load_balancer (group_id, dst_uri, resources, probe_mode, description) VALUES (1, 'sip:100.100.100.106', 'pstn=30', 2, 'FS4');
