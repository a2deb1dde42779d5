//! Where a buffer ends (BufferingHints: SizeInMBs or IntervalInSeconds, whichever comes first).
//!
//! A buffer starts at the delivery checkpoint: it takes records while their arrival is within
//! `interval` of its first record's, and stops after the record that brings it to `size`.
//! Arrival times grow along a shard, so once the clock passes the window's end no later record
//! can join it. A later look never cuts a buffer shorter than an earlier one did (the proptest);
//! what makes a redelivery after a crash identical is the range the runner records before it
//! writes (runner.rs).

/// The hints in the units the cut uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hints {
    pub size_bytes: u64,
    /// 0 delivers whatever has arrived as soon as possible.
    pub interval_ms: u64,
}

/// What to do with the records read from the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Deliver the first `count` records now.
    Deliver { count: usize },
    /// The buffer is not closed: look again at this time (or when records arrive).
    WaitUntil { ms: u64 },
    /// Nothing to deliver.
    Empty,
}

/// `records` are `(arrival_ms, bytes)` from the checkpoint on, in order, as far as they were
/// read; `read_all` says whether they reach the tip (otherwise more follow).
pub fn cut(records: &[(u64, usize)], hints: Hints, now_ms: u64, read_all: bool) -> Cut {
    let Some(&(first_ms, _)) = records.first() else { return Cut::Empty };
    // With interval 0 there is no window: whatever was read goes, up to the size.
    let window_end_ms = first_ms.saturating_add(hints.interval_ms);
    let mut bytes = 0u64;
    for (i, &(arrival_ms, len)) in records.iter().enumerate() {
        if i > 0 && hints.interval_ms > 0 && arrival_ms >= window_end_ms {
            return Cut::Deliver { count: i };
        }
        bytes += len as u64;
        if bytes >= hints.size_bytes {
            return Cut::Deliver { count: i + 1 };
        }
    }
    if now_ms >= window_end_ms || !read_all {
        // The window closed, or the read stopped short of the tip: nothing more can join what
        // was read unless the read is made longer, which the caller bounds by `size_bytes`.
        return Cut::Deliver { count: records.len() };
    }
    Cut::WaitUntil { ms: window_end_ms }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const HINTS: Hints = Hints { size_bytes: 100, interval_ms: 1_000 };

    #[test]
    fn size_interval_or_neither() {
        assert_eq!(cut(&[], HINTS, 0, true), Cut::Empty);
        assert_eq!(cut(&[(0, 60), (10, 60), (20, 60)], HINTS, 20, true), Cut::Deliver { count: 2 });
        assert_eq!(cut(&[(0, 10), (999, 10), (1_000, 10)], HINTS, 1_000, true), Cut::Deliver { count: 2 });
        assert_eq!(cut(&[(0, 10), (500, 10)], HINTS, 600, true), Cut::WaitUntil { ms: 1_000 });
        assert_eq!(cut(&[(0, 10), (500, 10)], HINTS, 1_000, true), Cut::Deliver { count: 2 });
        assert_eq!(cut(&[(0, 500)], HINTS, 0, true), Cut::Deliver { count: 1 }, "one record over the size");
    }

    #[test]
    fn interval_zero_delivers_what_has_arrived() {
        let now = Hints { size_bytes: 100, interval_ms: 0 };
        assert_eq!(cut(&[(5, 10), (5, 10), (6, 10)], now, 6, true), Cut::Deliver { count: 3 });
        assert_eq!(cut(&[(5, 60), (6, 60), (7, 10)], now, 7, true), Cut::Deliver { count: 2 }, "still cut by size");
        assert_eq!(cut(&[(6, 10)], now, 6, true), Cut::Deliver { count: 1 });
    }

    proptest! {
        /// A later look (more records read, a later clock) never cuts a buffer shorter than an
        /// earlier look delivered: a redelivery after a crash covers the first delivery.
        #[test]
        fn a_later_look_never_delivers_less(
            gaps in proptest::collection::vec(0u64..600, 1..40),
            sizes in proptest::collection::vec(1usize..60, 40),
            seen in 1usize..40,
            wait_ms in 0u64..3_000,
            interval_ms in prop_oneof![Just(0u64), Just(1_000u64)],
        ) {
            let hints = Hints { interval_ms, ..HINTS };
            let mut arrival = 0;
            let records: Vec<(u64, usize)> =
                gaps.iter().zip(&sizes).map(|(gap, size)| { arrival += gap; (arrival, *size) }).collect();
            let seen = seen.min(records.len());
            let first_now = records[seen - 1].0 + wait_ms;
            // What the first look had not read arrived after it looked.
            prop_assume!(records.get(seen).is_none_or(|next| next.0 >= first_now));
            if let Cut::Deliver { count } = cut(&records[..seen], hints, first_now, true) {
                let later_now = records.last().map_or(0, |r| r.0).max(first_now);
                match cut(&records, hints, later_now, true) {
                    Cut::Deliver { count: again } => prop_assert!(again >= count),
                    other => prop_assert!(false, "{other:?} after delivering {count}"),
                }
            }
        }
    }
}
