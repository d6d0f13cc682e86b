//! The SIP health check: an OPTIONS to a SIP socket (`siprox ping`, `[ha] health_check`).
