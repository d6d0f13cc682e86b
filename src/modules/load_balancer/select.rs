//! Choosing the destination with the most free capacity (spec §7): pure over what the
//! caller read from the table and the dialog profiles, so it is tested without either.

/// `lb_start` flags: `r` relative availability (percent free), `n` a destination with no
/// free capacity may still be chosen, `s` random among equally available destinations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub relative: bool,
    pub negative: bool,
    pub random_ties: bool,
}

impl Flags {
    /// The 3.x flag letters. The 1.x/2.x third argument of `load_balance` is an algorithm
    /// number instead (`0` absolute, `1` relative), which seed deployments still write.
    ///
    /// # Errors
    /// The first character that is neither a flag nor one of those numbers.
    pub fn parse(s: &str) -> Result<Flags, char> {
        let s = s.trim();
        match s {
            "0" => return Ok(Flags::default()),
            "1" => return Ok(Flags { relative: true, ..Flags::default() }),
            _ => {}
        }
        let mut f = Flags::default();
        for c in s.chars() {
            match c {
                'r' | 'R' => f.relative = true,
                'n' | 'N' => f.negative = true,
                's' | 'S' => f.random_ties = true,
                other => return Err(other),
            }
        }
        Ok(f)
    }

    /// As `lb_list` and the logs print them.
    pub fn text(self) -> String {
        [(self.relative, 'r'), (self.negative, 'n'), (self.random_ties, 's')]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, c)| *c)
            .collect()
    }
}

/// One destination of the group, as the selection sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: i64,
    /// Not disabled (by probing, `lb_disable_dst` or MI).
    pub enabled: bool,
    /// Already tried by this session (`lb_next` skips it).
    pub tried: bool,
    /// `(max, load)` of each requested resource, in request order; `None` when the
    /// destination does not offer every requested resource.
    pub resources: Option<Vec<(i64, u64)>>,
}

/// Why nothing was chosen; the script codes of spec §7.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoPick {
    /// `-2`: destinations qualify, none has free capacity.
    NoCapacity,
    /// `-3`: no enabled (untried) destination of the group offers every resource.
    NoDestination,
}

/// Free capacity of one resource: channels left, or percent left with `relative`. A
/// resource of capacity 0 (or less, a bad row) has none left: -100 per call in relative
/// terms, so `n` still prefers the emptiest one.
pub fn availability(max: i64, load: u64, relative: bool) -> i64 {
    let load = i64::try_from(load).unwrap_or(i64::MAX);
    if !relative {
        return max.saturating_sub(load);
    }
    if max <= 0 {
        return load.saturating_mul(-100);
    }
    // Integer percent, as OpenSIPS computes it: ties between 10/20 and 1/2 loads are real.
    100 - load.saturating_mul(100) / max
}

/// The destination's availability: its scarcest requested resource.
fn candidate_availability(c: &Candidate, relative: bool) -> Option<i64> {
    let res = c.resources.as_ref()?;
    res.iter().map(|&(max, load)| availability(max, load, relative)).min()
}

/// Index (into `cands`, which is in table order) of the destination to use: the highest
/// availability, which must be positive unless `negative`; among equals the first, or a
/// random one (`pick(n)` in `0..n`) with `random_ties`.
///
/// # Errors
/// [`NoPick::NoDestination`] when no enabled, untried candidate offers every resource;
/// [`NoPick::NoCapacity`] when some do but none has capacity left.
pub fn choose(cands: &[Candidate], flags: Flags, pick: impl FnOnce(usize) -> usize) -> Result<usize, NoPick> {
    let scored: Vec<(usize, i64)> = cands
        .iter()
        .enumerate()
        .filter(|(_, c)| c.enabled && !c.tried)
        .filter_map(|(i, c)| candidate_availability(c, flags.relative).map(|a| (i, a)))
        .collect();
    let best = scored.iter().map(|&(_, a)| a).max().ok_or(NoPick::NoDestination)?;
    if best <= 0 && !flags.negative {
        return Err(NoPick::NoCapacity);
    }
    let tied: Vec<usize> = scored.iter().filter(|&&(_, a)| a == best).map(|&(i, _)| i).collect();
    let at = if flags.random_ties && tied.len() > 1 { pick(tied.len()).min(tied.len() - 1) } else { 0 };
    Ok(tied[at])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: i64, res: &[(i64, u64)]) -> Candidate {
        Candidate { id, enabled: true, tried: false, resources: Some(res.to_vec()) }
    }

    fn first(_: usize) -> usize {
        0
    }

    #[test]
    fn flags() {
        assert_eq!(Flags::parse(""), Ok(Flags::default()));
        assert_eq!(Flags::parse("0"), Ok(Flags::default()));
        assert_eq!(Flags::parse("1"), Ok(Flags { relative: true, ..Flags::default() }));
        assert_eq!(
            Flags::parse("rns"),
            Ok(Flags { relative: true, negative: true, random_ties: true })
        );
        assert_eq!(Flags::parse("rx"), Err('x'));
        assert_eq!(Flags::parse("2"), Err('2'));
        assert_eq!(Flags::parse("sr").map(Flags::text).as_deref(), Ok("rs"));
    }

    #[test]
    fn availability_absolute_and_relative() {
        assert_eq!(availability(32, 2, false), 30);
        assert_eq!(availability(10, 12, false), -2);
        assert_eq!(availability(10, 1, true), 90);
        assert_eq!(availability(20, 3, true), 85);
        assert_eq!(availability(3, 1, true), 67, "integer percent");
        assert_eq!(availability(0, 0, true), 0);
        assert_eq!(availability(0, 2, true), -200);
    }

    #[test]
    fn absolute_picks_most_free_channels() {
        // a: 10 - 2 = 8 free, b: 20 - 15 = 5 free.
        let c = [cand(1, &[(10, 2)]), cand(2, &[(20, 15)])];
        assert_eq!(choose(&c, Flags::default(), first), Ok(0));
        // Relative: a 80 %, b 25 % free: a too; b with 20 - 5 is 75 % vs a 80 %.
        let c = [cand(1, &[(10, 2)]), cand(2, &[(20, 5)])];
        assert_eq!(choose(&c, Flags::default(), first), Ok(1), "15 free channels beat 8");
        assert_eq!(choose(&c, Flags { relative: true, ..Flags::default() }, first), Ok(0), "80 % beats 75 %");
    }

    #[test]
    fn the_scarcest_requested_resource_counts() {
        // a: pstn 30 free, transc 1 free -> 1; b: 5 and 5 -> 5.
        let c = [cand(1, &[(32, 2), (10, 9)]), cand(2, &[(10, 5), (10, 5)])];
        assert_eq!(choose(&c, Flags::default(), first), Ok(1));
    }

    #[test]
    fn ties_go_to_table_order_or_random_with_s() {
        let c = [cand(1, &[(10, 5)]), cand(2, &[(10, 5)]), cand(3, &[(10, 6)])];
        assert_eq!(choose(&c, Flags::default(), |_| panic!("no draw without s")), Ok(0));
        let s = Flags { random_ties: true, ..Flags::default() };
        assert_eq!(choose(&c, s, |n| { assert_eq!(n, 2, "two tied"); 1 }), Ok(1));
        assert_eq!(choose(&c, s, |_| 0), Ok(0));
    }

    #[test]
    fn no_capacity_unless_n() {
        let c = [cand(1, &[(10, 10)]), cand(2, &[(5, 7)])];
        assert_eq!(choose(&c, Flags::default(), first), Err(NoPick::NoCapacity));
        let n = Flags { negative: true, ..Flags::default() };
        assert_eq!(choose(&c, n, first), Ok(0), "0 free beats -2");
        let rel = Flags { relative: true, ..Flags::default() };
        assert_eq!(choose(&c, rel, first), Err(NoPick::NoCapacity));
    }

    #[test]
    fn no_destination_when_none_qualifies() {
        assert_eq!(choose(&[], Flags::default(), first), Err(NoPick::NoDestination));
        let mut off = cand(1, &[(10, 0)]);
        off.enabled = false;
        let missing = Candidate { id: 2, enabled: true, tried: false, resources: None };
        assert_eq!(choose(&[off.clone(), missing], Flags::default(), first), Err(NoPick::NoDestination));
        // A disabled destination with capacity does not turn -3 into -2 or a pick.
        assert_eq!(choose(&[off, cand(3, &[(1, 1)])], Flags::default(), first), Err(NoPick::NoCapacity));
    }

    #[test]
    fn next_skips_the_tried_ones() {
        let mut c = vec![cand(1, &[(10, 0)]), cand(2, &[(10, 3)]), cand(3, &[(10, 9)])];
        assert_eq!(choose(&c, Flags::default(), first), Ok(0));
        c[0].tried = true;
        assert_eq!(choose(&c, Flags::default(), first), Ok(1));
        c[1].tried = true;
        assert_eq!(choose(&c, Flags::default(), first), Ok(2));
        c[2].tried = true;
        assert_eq!(choose(&c, Flags::default(), first), Err(NoPick::NoDestination));
    }

    /// The e2e spread test relies on this: relative mode over capacities 10 and 20 gives
    /// 10 and 20 calls when 30 arrive, and keeps the 1:2 ratio on the way.
    #[test]
    fn relative_mode_spreads_by_capacity() {
        let caps = [10i64, 20];
        let mut load = [0u64; 2];
        let rel = Flags { relative: true, ..Flags::default() };
        for call in 1..=30 {
            let c: Vec<Candidate> = (0..2).map(|i| cand(i as i64 + 1, &[(caps[i], load[i])])).collect();
            let i = choose(&c, rel, first).expect("capacity left");
            load[i] += 1;
            if call % 3 == 0 {
                assert_eq!(load, [call / 3, 2 * call / 3], "after {call} calls");
            }
        }
        let c: Vec<Candidate> = (0..2).map(|i| cand(i as i64 + 1, &[(caps[i], load[i])])).collect();
        assert_eq!(choose(&c, rel, first), Err(NoPick::NoCapacity));
    }
}
