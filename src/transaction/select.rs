//! Which negative reply goes upstream once every branch has failed
//! (OpenSIPS's order; spec/opensips-primitives.md §4.4). RFC 3261 §16.7 step 6 leaves the
//! choice to the proxy beyond "6xx over the rest"; operators expect OpenSIPS's choice.

/// Rank of a final negative code: lower is better. `cancelled` = the caller sent CANCEL.
pub fn rank(code: u16, cancelled: bool) -> (u8, u16) {
    let class = match code {
        487 if cancelled => 0,
        600..=699 => 1,
        300..=399 => 2,
        401 => 3,
        407 => 4,
        415 => 5,
        420 => 6,
        484 => 7,
        400..=499 if code != 408 => 8,
        500..=599 if code != 503 => 9,
        408 => 10,
        503 => 11,
        _ => 12,
    };
    // Inside a class the lowest code wins; 6xx compare as if they were 3xx.
    (class, code)
}

/// Index of the best reply among `(branch index, code)` pairs.
pub fn pick(codes: impl IntoIterator<Item = (usize, u16)>, cancelled: bool) -> Option<(usize, u16)> {
    codes.into_iter().min_by_key(|&(i, c)| (rank(c, cancelled), i))
}

#[cfg(test)]
mod tests {
    use super::pick;

    #[test]
    fn opensips_order() {
        assert_eq!(pick([(0, 503), (1, 408)], false), Some((1, 408)));
        assert_eq!(pick([(0, 500), (1, 408)], false), Some((0, 500)));
        assert_eq!(pick([(0, 404), (1, 500)], false), Some((0, 404)));
        assert_eq!(pick([(0, 404), (1, 407)], false), Some((1, 407)));
        assert_eq!(pick([(0, 407), (1, 401)], false), Some((1, 401)));
        assert_eq!(pick([(0, 486), (1, 302)], false), Some((1, 302)));
        assert_eq!(pick([(0, 302), (1, 603)], false), Some((1, 603)));
        assert_eq!(pick([(0, 603), (1, 487)], true), Some((1, 487)));
        assert_eq!(pick([(0, 603), (1, 487)], false), Some((0, 603)));
        assert_eq!(pick([(0, 486), (1, 480)], false), Some((1, 480)));
        assert_eq!(pick(std::iter::empty(), false), None);
    }
}
