//! The fencing hook (Heartbeat's STONITH): an operator's command that makes sure a silent
//! peer no longer holds the VIP (powers it off, cuts its switch port) before this node
//! takes the address. Only exit status 0 counts as fenced.

use std::time::Duration;
use tokio::process::Command;

/// Runs `command` through `sh -c` with the peer, this node and the VIP in the environment;
/// true when it exited 0 within `timeout`. A command that runs too long is killed.
pub async fn run(command: &str, peer: &str, node: &str, vip: &str, timeout: Duration) -> bool {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env("SIPROX_HA_PEER", peer)
        .env("SIPROX_HA_NODE", node)
        .env("SIPROX_HA_VIP", vip)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(command, error = %e, "ha: fencing command not started");
            return false;
        }
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => {
            tracing::warn!(peer, command, "ha: peer fenced");
            true
        }
        Ok(Ok(out)) => {
            let said = String::from_utf8_lossy(&out.stderr);
            tracing::error!(peer, command, status = %out.status, stderr = %said.trim(), "ha: fencing failed; the VIP is not taken");
            false
        }
        Ok(Err(e)) => {
            tracing::error!(peer, command, error = %e, "ha: fencing command failed to run");
            false
        }
        Err(_) => {
            tracing::error!(peer, command, ?timeout, "ha: fencing command timed out (killed); the VIP is not taken");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exit_status_and_environment() {
        let t = Duration::from_secs(5);
        assert!(
            run(
                "test \"$SIPROX_HA_PEER/$SIPROX_HA_NODE/$SIPROX_HA_VIP\" = lb1/lb2/10.0.0.1/24",
                "lb1",
                "lb2",
                "10.0.0.1/24",
                t
            )
            .await
        );
        assert!(!run("exit 3", "lb1", "lb2", "v", t).await);
        assert!(!run("sleep 5", "lb1", "lb2", "v", Duration::from_millis(100)).await);
    }
}
