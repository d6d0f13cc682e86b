-- The shared database of the pair (seeds 003/004): the subscribers the phones log in with.
-- Plain INSERTs: PostgreSQL, MySQL/MariaDB and SQLite. Create the tables first with
-- `siprox migrate -c siprox.toml` (either node; the other finds them).
--
-- ha1 = MD5(username:domain:password), ha1_sha256 = SHA-256 of the same (RFC 7616); the
-- example passwords are alice-secret and bob-secret: replace them, or add users with
-- `siprox ctl -c siprox.toml subscriber add bob@example.com 'NEW-PASSWORD'`.
-- The location table starts empty: registrations fill it, through whichever node holds the VIP.
INSERT INTO subscriber (username, domain, ha1, ha1_sha256) VALUES ('alice', 'example.com', 'ae7914636bb60b37a9441871cf572389', '1c733d942b955c362d40a0aa27c63f0d5543d51e0a655f9b1c6fab041493ee5d');
INSERT INTO subscriber (username, domain, ha1, ha1_sha256) VALUES ('bob', 'example.com', 'ede4211a900d51d7799431a9b031f433', 'ec2f43ed00c65e2fefa7519a79f4ae6d204d34d45c4e30fd9a8048691cfd017f');
