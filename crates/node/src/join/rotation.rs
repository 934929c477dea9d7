//! When the join token rotates, and which generation a member takes: pure decisions taking
//! `now`.
//!
//! ```text
//!  removal learned ──▶ RotationPlan::schedule: due at now + ROTATE_AFTER_REMOVAL (made here)
//!                      or + ROTATION_FALLBACK more (made elsewhere; a pending one moves later)
//!  every sync ──▶ RotationPlan::take_due: due and the generation has not moved ─▶ rotate
//!  gossip ──▶ adopts: a higher generation (counter, then salt) replaces ours
//!  node remove ──▶ TokenWatch: the new token, once it held still TOKEN_HOLD
//! ```

use super::timers::JoinTimers;
use super::token::JoinGeneration;
use std::time::{Duration, Instant};

/// When to rotate after learning of removals at `now` (`mine`: one of them was made here),
/// given the rotation already pending, if any, and the current generation.
pub(crate) fn rotation_due(
    now: Instant,
    mine: bool,
    pending: Option<&(Instant, JoinGeneration)>,
    cur: &JoinGeneration,
    t: &JoinTimers,
) -> Instant {
    if mine {
        // Covers every removal learned before: none of them is cut off later than this one.
        return now + t.rotate_after_removal;
    }
    let fallback = now + t.rotate_after_removal + t.rotation_fallback;
    match pending {
        // A pending rotation of this generation (ours or a fallback) moves later, never
        // earlier: this removal's node must be cut off first.
        Some((at, then)) if then == cur => fallback.max(*at),
        _ => fallback,
    }
}

/// A token rotation asked for by removals: due at an instant, unless the generation has
/// left the one it was planned for.
#[derive(Debug, Default)]
pub(crate) struct RotationPlan {
    pending: Option<(Instant, JoinGeneration)>,
}

impl RotationPlan {
    /// Recent removals were learned at `now` (`mine`: one was made here), at generation
    /// `cur`.
    pub(crate) fn schedule(
        &mut self,
        now: Instant,
        mine: bool,
        cur: &JoinGeneration,
        t: &JoinTimers,
    ) {
        let due = rotation_due(now, mine, self.pending.as_ref(), cur, t);
        self.pending = Some((due, cur.clone()));
    }

    /// Whether to rotate at `now`, the generation being `cur`. A due plan is used up either
    /// way; it rotates only if nobody rotated meanwhile.
    pub(crate) fn take_due(&mut self, now: Instant, cur: &JoinGeneration) -> bool {
        match &self.pending {
            Some((at, _)) if now >= *at => {
                self.pending.take().is_some_and(|(_, then)| then == *cur)
            }
            _ => false,
        }
    }
}

/// How far above its own counter a member follows a gossiped generation. A rotation raises
/// the counter by one, so a member away for fewer rotations than this catches up; a forged
/// `u64::MAX` (which, with an all-`ff` salt, no later rotation could ever beat) is ignored.
pub const MAX_GENERATION_STEP: u64 = 1000;

/// Whether a member at generation `cur` takes `offered` (`force`: at start, the saved one).
pub(crate) fn adopts(cur: &JoinGeneration, offered: &JoinGeneration, force: bool) -> bool {
    force || (offered > cur && offered.n <= cur.n.saturating_add(MAX_GENERATION_STEP))
}

/// What `node remove` sees while it waits for the rotated token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenWait {
    /// Keep polling.
    Waiting,
    /// The token rotated and held still: print this one.
    Rotated(String),
    /// It did not rotate in time.
    TimedOut,
}

/// Waits for the token to change and then hold still for `token_hold` (another member may
/// rotate at the same moment and the cluster keeps one of the two generations, so what is
/// printed is the one that stays), for at most `rotate_after_removal + rotation_wait_slack`.
#[derive(Debug)]
pub struct TokenWatch {
    before: String,
    last: String,
    since: Instant,
    started: Instant,
    hold: Duration,
    wait: Duration,
}

impl TokenWatch {
    /// Start watching at `now`; `before` is the token before the removal.
    pub fn new(before: &str, now: Instant, t: &JoinTimers) -> TokenWatch {
        TokenWatch {
            before: before.to_string(),
            last: before.to_string(),
            since: now,
            started: now,
            hold: t.token_hold,
            wait: t.rotate_after_removal + t.rotation_wait_slack,
        }
    }

    /// How long it waits at most.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// The token seen at `now`.
    pub fn observe(&mut self, token: &str, now: Instant) -> TokenWait {
        if token != self.last {
            self.last = token.to_string();
            self.since = now;
        }
        let rotated = self.last != self.before;
        let late = now.saturating_duration_since(self.started) > self.wait;
        let held = now.saturating_duration_since(self.since) >= self.hold;
        if rotated && (held || late) {
            TokenWait::Rotated(self.last.clone())
        } else if late {
            TokenWait::TimedOut
        } else {
            TokenWait::Waiting
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gens() -> (JoinGeneration, JoinGeneration) {
        (
            JoinGeneration::first(1),
            JoinGeneration {
                n: 2,
                salt: vec![7; 16],
            },
        )
    }

    #[test]
    fn only_the_remover_rotates_on_time() {
        let tm = JoinTimers::default();
        let t = Instant::now();
        let (g1, g2) = gens();
        let (after, fb) = (tm.rotate_after_removal, tm.rotation_fallback);
        // The remover rotates after ROTATE_AFTER_REMOVAL; the others stand by.
        assert_eq!(rotation_due(t, true, None, &g1, &tm), t + after);
        let fallback = t + after + fb;
        assert_eq!(rotation_due(t, false, None, &g1, &tm), fallback);
        // A removal made here after one learned from another member: on time, from now.
        let pending = (fallback, g1.clone());
        let later = t + Duration::from_secs(3);
        assert_eq!(
            rotation_due(later, true, Some(&pending), &g1, &tm),
            later + after
        );
        // Another member's removal after ours: our pending rotation becomes a fallback
        // (that member rotates on time, later than ours would have).
        let ours = (t + after, g1.clone());
        assert_eq!(
            rotation_due(later, false, Some(&ours), &g1, &tm),
            later + after + fb
        );
        // A pending rotation of an older generation (someone rotated meanwhile) is replaced.
        let stale = (t + Duration::from_secs(600), g1);
        assert_eq!(
            rotation_due(later, false, Some(&stale), &g2, &tm),
            later + after + fb
        );
        // A pending fallback later than the new one stays (never earlier).
        let far = (t + Duration::from_secs(600), g2.clone());
        assert_eq!(rotation_due(later, false, Some(&far), &g2, &tm), far.0);
    }

    #[test]
    fn a_plan_rotates_once_when_due_and_only_if_nobody_rotated() {
        let tm = JoinTimers {
            rotate_after_removal: Duration::from_secs(1),
            rotation_fallback: Duration::from_secs(2),
            ..JoinTimers::default()
        };
        let t = Instant::now();
        let (g1, g2) = gens();
        let mut plan = RotationPlan::default();
        assert!(!plan.take_due(t, &g1), "nothing planned");
        plan.schedule(t, true, &g1, &tm);
        assert!(!plan.take_due(t + Duration::from_millis(999), &g1));
        assert!(plan.take_due(t + Duration::from_secs(1), &g1));
        assert!(!plan.take_due(t + Duration::from_secs(2), &g1), "used up");
        // Learned elsewhere: the fallback, and not at all if a new generation came.
        plan.schedule(t, false, &g1, &tm);
        assert!(!plan.take_due(t + Duration::from_secs(2), &g1));
        assert!(!plan.take_due(t + Duration::from_secs(3), &g2));
        assert!(!plan.take_due(t + Duration::from_secs(4), &g1), "used up");
    }

    #[test]
    fn the_highest_generation_is_adopted() {
        let (g1, g2) = gens();
        assert!(adopts(&g1, &g2, false));
        assert!(!adopts(&g2, &g1, false));
        assert!(!adopts(&g1, &g1, false));
        assert!(adopts(&g2, &g1, true), "at start the saved one");
        let same_n = JoinGeneration {
            n: 2,
            salt: vec![8; 16],
        };
        assert!(
            adopts(&g2, &same_n, false),
            "equal counters: the higher salt"
        );
    }

    /// Issue 13 attack 5: a forged `join_gen` of `u64::MAX` with an all-`ff` salt pinned the
    /// token forever (no rotation could beat it).
    #[test]
    fn a_forged_generation_far_ahead_is_not_adopted() {
        let cur = JoinGeneration::salted(4);
        let pin = JoinGeneration {
            n: u64::MAX,
            salt: vec![0xff; 16],
        };
        assert!(!adopts(&cur, &pin, false), "u64::MAX pins nothing");
        let far = JoinGeneration {
            n: 4 + MAX_GENERATION_STEP + 1,
            salt: vec![0xff; 16],
        };
        assert!(!adopts(&cur, &far, false));
        let catch_up = JoinGeneration::salted(4 + MAX_GENERATION_STEP);
        assert!(
            adopts(&cur, &catch_up, false),
            "a member away for a while catches up"
        );
        // And the cluster keeps rotating past a near one.
        let near = JoinGeneration {
            n: 5,
            salt: vec![0xff; 16],
        };
        assert!(adopts(&cur, &near, false));
        assert!(adopts(&near, &near.next(), false));
    }

    #[test]
    fn node_remove_prints_the_token_once_it_held_still() {
        let tm = JoinTimers {
            token_hold: Duration::from_secs(3),
            rotate_after_removal: Duration::from_secs(15),
            rotation_wait_slack: Duration::from_secs(30),
            ..JoinTimers::default()
        };
        let t = Instant::now();
        let s = |n| t + Duration::from_secs(n);
        let mut w = TokenWatch::new("old", t, &tm);
        assert_eq!(w.wait(), Duration::from_secs(45));
        assert_eq!(w.observe("old", s(1)), TokenWait::Waiting);
        assert_eq!(w.observe("a", s(16)), TokenWait::Waiting);
        assert_eq!(
            w.observe("b", s(17)),
            TokenWait::Waiting,
            "another member rotated"
        );
        assert_eq!(w.observe("b", s(19)), TokenWait::Waiting);
        assert_eq!(w.observe("b", s(20)), TokenWait::Rotated("b".into()));
        // Late: whatever rotated is printed; nothing rotated is an error.
        let mut w = TokenWatch::new("old", t, &tm);
        assert_eq!(w.observe("c", s(45)), TokenWait::Waiting);
        assert_eq!(w.observe("c", s(46)), TokenWait::Rotated("c".into()));
        let mut w = TokenWatch::new("old", t, &tm);
        assert_eq!(w.observe("old", s(45)), TokenWait::Waiting);
        assert_eq!(w.observe("old", s(46)), TokenWait::TimedOut);
    }
}
