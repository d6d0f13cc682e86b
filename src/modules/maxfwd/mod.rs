//! maxfwd: loop protection by Max-Forwards (RFC 3261 §16.3 step 3, §16.6 step 3).
//!
//! Parameters (`[maxfwd]`): `max_limit` (default 256): a received value above it is
//! lowered to it.
//!
//! Script functions:
//! - `mf_process_maxfwd_header(max)` → 2 header added (`Max-Forwards: max`), 1 decremented,
//!   -1 value is 0 (reply 483), -2 unparsable.
//! - `is_maxfwd_lt(n)` → 1 value < n, -1 value ≥ n, -2 no header, -3 unparsable.

pub mod script;

/// What `mf_process_maxfwd_header` does to a received value.
#[derive(Debug, PartialEq, Eq)]
pub enum MfAction {
    Insert(u32),
    Set(u32),
    Zero,
    Bad,
}

/// Decides the Max-Forwards edit for a received header value (`None`: absent).
pub fn process(received: Option<Result<u32, ()>>, max: u32, max_limit: u32) -> MfAction {
    match received {
        None => MfAction::Insert(max),
        Some(Err(())) => MfAction::Bad,
        Some(Ok(0)) => MfAction::Zero,
        // OpenSIPS: a value above max_limit becomes max_limit + 1, then is decremented.
        Some(Ok(v)) if v > max_limit => MfAction::Set(max_limit),
        Some(Ok(v)) => MfAction::Set(v - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn codes() {
        assert_eq!(process(None, 10, 256), MfAction::Insert(10));
        assert_eq!(process(Some(Ok(70)), 10, 256), MfAction::Set(69));
        assert_eq!(process(Some(Ok(1)), 10, 256), MfAction::Set(0));
        assert_eq!(process(Some(Ok(0)), 10, 256), MfAction::Zero);
        assert_eq!(process(Some(Ok(300)), 10, 256), MfAction::Set(256));
        assert_eq!(process(Some(Ok(70)), 10, 10), MfAction::Set(10));
        assert_eq!(process(Some(Err(())), 10, 256), MfAction::Bad);
    }
}
