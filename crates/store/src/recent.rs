//! The changes this process committed itself, kept in memory for a moment so that its own check
//! path can apply them without reading the change log back.
//!
//! A write holds SQLite's write lock from its first read to its commit (on PostgreSQL, the log's
//! turn from its first logging statement), so the log rows it wrote are exactly the sequence
//! numbers after the one it found on starting (taking the turn): each commit is
//! known whole, as a span `(before, after]` with its rows. A catch-up from `a` to `b` is at hand
//! when spans of this process cover `(a, b]` without a gap; any row written by another program
//! (the CLI, a second server, `sqlite3` by hand) leaves a gap, and the caller reads the log.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::Change;

/// Spans kept: a check path that is more than this many own commits behind reads the log.
const KEPT: usize = 4096;

struct Span {
    before: i64,
    after: i64,
    changes: Vec<Change>,
}

#[derive(Default)]
pub struct RecentChanges {
    /// In sequence order, which is commit order (one writer at a time). On PostgreSQL several
    /// writes of this process commit one after the other and are recorded in any order: each
    /// is put in its place. Recorded there just before the commit: a span of a write that did
    /// not commit may stay (its sequence numbers are never given again, so no position falls
    /// inside it or at its end, and it is never part of a catch-up).
    spans: Mutex<VecDeque<Span>>,
}

impl RecentChanges {
    /// Records a commit: the log's position before it and the rows it logged, in order.
    pub fn committed(&self, before: i64, changes: Vec<Change>) {
        let Some(after) = changes.last().map(|c| c.seq) else {
            return;
        };
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        if spans.len() >= KEPT {
            spans.pop_front();
        }
        let at = spans.partition_point(|s| s.after <= before);
        spans.insert(
            at,
            Span {
                before,
                after,
                changes,
            },
        );
    }

    /// The changes after position `from` up to `until`, if this process made them all.
    pub fn between(&self, from: i64, until: i64) -> Option<Vec<Change>> {
        if until <= from {
            return Some(Vec::new());
        }
        let spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        // The first span that ends after `from`; it must start exactly there.
        let first = spans.partition_point(|s| s.after <= from);
        let mut at = from;
        let mut out = Vec::new();
        for s in spans.range(first..) {
            if s.before != at {
                return None;
            }
            out.extend(s.changes.iter().cloned());
            at = s.after;
            if at >= until {
                return (at == until).then_some(out);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(seq: i64, account: &str) -> Change {
        Change {
            seq,
            app_id: Some("app".into()),
            account_key: Some(account.into()),
            person_id: None,
        }
    }

    fn seqs(c: Option<Vec<Change>>) -> Option<Vec<i64>> {
        c.map(|c| c.iter().map(|c| c.seq).collect())
    }

    #[test]
    fn contiguous_own_commits_are_at_hand() {
        let r = RecentChanges::default();
        r.committed(10, vec![change(11, "a")]);
        r.committed(11, vec![change(12, "b"), change(13, "c")]);
        assert_eq!(seqs(r.between(10, 13)), Some(vec![11, 12, 13]));
        assert_eq!(seqs(r.between(11, 13)), Some(vec![12, 13]));
        assert_eq!(seqs(r.between(13, 13)), Some(vec![]));
    }

    #[test]
    fn a_gap_means_another_writer_and_is_not_at_hand() {
        let r = RecentChanges::default();
        r.committed(10, vec![change(11, "a")]);
        // Sequence number 12 was written by another process.
        r.committed(12, vec![change(13, "b")]);
        assert_eq!(r.between(10, 13), None);
        assert_eq!(seqs(r.between(12, 13)), Some(vec![13]));
        assert_eq!(r.between(9, 11), None, "before the first span kept");
        assert_eq!(r.between(13, 14), None, "past the last span");
    }

    #[test]
    fn a_position_inside_a_span_is_not_at_hand() {
        let r = RecentChanges::default();
        r.committed(10, vec![change(11, "a"), change(12, "b")]);
        // Nobody can have stopped half-way through one commit; refuse rather than guess.
        assert_eq!(r.between(10, 11), None);
        assert_eq!(r.between(11, 12), None);
    }

    #[test]
    fn commits_recorded_out_of_order_are_put_in_order() {
        let r = RecentChanges::default();
        r.committed(11, vec![change(12, "b")]);
        r.committed(10, vec![change(11, "a")]);
        r.committed(12, vec![change(13, "c")]);
        assert_eq!(seqs(r.between(10, 13)), Some(vec![11, 12, 13]));
    }

    /// On PostgreSQL a write records its rows before it commits. One that then does not
    /// commit leaves its span behind, its sequence numbers never given again: neither another
    /// process's commit after it nor this process's next one is taken for it.
    #[test]
    fn a_span_that_did_not_commit_is_never_taken_for_a_commit() {
        let r = RecentChanges::default();
        // Rolled back: 11 and 12 are never in the log, the position stays at 10.
        r.committed(10, vec![change(11, "a"), change(12, "b")]);
        // Another process commits 13: not at hand.
        assert_eq!(r.between(10, 13), None);
        // This process's next write found the position at 10 and logged 14.
        r.committed(10, vec![change(14, "c")]);
        assert_eq!(seqs(r.between(10, 14)), Some(vec![14]), "without a or b");
        assert_eq!(r.between(12, 14), None, "12 was never a position");
    }

    #[test]
    fn old_spans_are_forgotten() {
        let r = RecentChanges::default();
        for i in 0..(KEPT as i64 + 10) {
            r.committed(i, vec![change(i + 1, "a")]);
        }
        assert_eq!(r.between(0, 5), None);
        assert!(r.between(KEPT as i64, KEPT as i64 + 10).is_some());
    }
}
