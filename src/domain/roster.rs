//! Who is on call: rotation arithmetic in the team's own time zone.
//!
//! Hand-offs happen at the rotation's local wall-clock time (a rotation that starts Monday 09:00 in
//! Seoul hands off every Monday at 09:00 Seoul time), so daylight-saving changes never move them by
//! an hour. The rotation extends backwards before its start, so every instant has a primary.

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use super::ids::UserId;

/// Why a rotation cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    #[error("a rotation needs at least one member")]
    NoMembers,
    #[error("a rotation length must be longer than zero")]
    ZeroLength,
    #[error("{0} appears twice in the rotation; list each person once")]
    DuplicateMember(UserId),
}

/// A team's rotation: members in order, a start, a length, a time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    members: Vec<UserId>,
    start: NaiveDateTime,
    tz: Tz,
    length: TimeDelta,
}

/// The shift covering one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Shift<'a> {
    /// Commander by default: the primary on call.
    pub primary: &'a UserId,
    /// Investigator by default: the next person on the rotation. `None` for a one-member team.
    pub next: Option<&'a UserId>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

impl Rotation {
    pub fn new(members: Vec<UserId>, start: NaiveDateTime, tz: Tz, length: TimeDelta) -> Result<Self, RotationError> {
        if members.is_empty() {
            return Err(RotationError::NoMembers);
        }
        if length <= TimeDelta::zero() {
            return Err(RotationError::ZeroLength);
        }
        for (i, m) in members.iter().enumerate() {
            if members[..i].contains(m) {
                return Err(RotationError::DuplicateMember(m.clone()));
            }
        }
        Ok(Rotation { members, start, tz, length })
    }

    pub fn members(&self) -> &[UserId] {
        &self.members
    }

    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    pub fn contains(&self, user: &UserId) -> bool {
        self.members.contains(user)
    }

    /// The shift in effect at `now`.
    pub fn shift_at(&self, now: DateTime<Utc>) -> Shift<'_> {
        let local_now = now.with_timezone(&self.tz).naive_local();
        let elapsed = (local_now - self.start).num_seconds();
        let period = self.length.num_seconds().max(1);
        let k = elapsed.div_euclid(period);
        let n = self.members.len() as i64;
        let index = k.rem_euclid(n) as usize;
        let shift_start = self.start + TimeDelta::seconds(k * period);
        let shift_end = self.start + TimeDelta::seconds((k + 1) * period);
        Shift {
            primary: &self.members[index],
            next: (n > 1).then(|| &self.members[(index + 1) % self.members.len()]),
            starts_at: self.local_to_utc(shift_start),
            ends_at: self.local_to_utc(shift_end),
        }
    }

    /// Everyone after the primary at `now`, in rotation order: who to escalate to, nearest first.
    pub fn after_primary(&self, now: DateTime<Utc>) -> Vec<&UserId> {
        let primary = self.shift_at(now).primary;
        let i = self.members.iter().position(|m| m == primary).unwrap_or(0);
        (1..self.members.len()).map(|step| &self.members[(i + step) % self.members.len()]).collect()
    }

    /// Maps a local wall-clock time to UTC. In a fall-back overlap the earlier instant wins; in a
    /// spring-forward gap the hand-off happens when the clock reaches the next existing minute.
    fn local_to_utc(&self, local: NaiveDateTime) -> DateTime<Utc> {
        let mut probe = local;
        for _ in 0..=24 * 4 {
            match self.tz.from_local_datetime(&probe) {
                LocalResult::Single(t) => return t.with_timezone(&Utc),
                LocalResult::Ambiguous(early, _) => return early.with_timezone(&Utc),
                LocalResult::None => probe += TimeDelta::minutes(15),
            }
        }
        Utc.from_utc_datetime(&local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn users(ids: &[&str]) -> Vec<UserId> {
        ids.iter().map(|s| UserId::parse(*s).unwrap()).collect()
    }

    fn naive(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, min, 0).unwrap()
    }

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.from_utc_datetime(&naive(y, m, d, h, min))
    }

    fn weekly(tz: Tz, start: NaiveDateTime) -> Rotation {
        Rotation::new(users(&["U0AAA", "U0BBB", "U0CCC"]), start, tz, TimeDelta::days(7)).unwrap()
    }

    #[test]
    fn primary_changes_exactly_at_the_local_handoff() {
        // Seoul is UTC+9 with no DST: Monday 09:00 KST is 00:00 UTC.
        let r = weekly(chrono_tz::Asia::Seoul, naive(2026, 11, 2, 9, 0));
        let before = r.shift_at(utc(2026, 11, 8, 23, 59));
        assert_eq!(before.primary.as_str(), "U0AAA");
        assert_eq!(before.next.unwrap().as_str(), "U0BBB");
        let after = r.shift_at(utc(2026, 11, 9, 0, 0));
        assert_eq!(after.primary.as_str(), "U0BBB");
        assert_eq!(after.next.unwrap().as_str(), "U0CCC");
        assert_eq!(after.starts_at, utc(2026, 11, 9, 0, 0));
        assert_eq!(after.ends_at, utc(2026, 11, 16, 0, 0));
    }

    #[test]
    fn rotation_wraps_around_and_next_of_last_is_first() {
        let r = weekly(chrono_tz::Asia::Seoul, naive(2026, 11, 2, 9, 0));
        let third = r.shift_at(utc(2026, 11, 17, 0, 0));
        assert_eq!(third.primary.as_str(), "U0CCC");
        assert_eq!(third.next.unwrap().as_str(), "U0AAA");
        assert_eq!(r.shift_at(utc(2026, 11, 24, 0, 0)).primary.as_str(), "U0AAA");
    }

    #[test]
    fn instants_before_the_start_extend_the_rotation_backwards() {
        let r = weekly(chrono_tz::Asia::Seoul, naive(2026, 11, 2, 9, 0));
        let week_before = r.shift_at(utc(2026, 10, 30, 12, 0));
        assert_eq!(week_before.primary.as_str(), "U0CCC");
        assert_eq!(week_before.ends_at, utc(2026, 11, 2, 0, 0));
    }

    #[test]
    fn handoff_keeps_local_time_across_spring_forward() {
        // New York moves to EDT on 2026-03-08. 09:00 EST = 14:00 UTC; 09:00 EDT = 13:00 UTC.
        let r = weekly(chrono_tz::America::New_York, naive(2026, 3, 2, 9, 0));
        assert_eq!(r.shift_at(utc(2026, 3, 2, 14, 0)).primary.as_str(), "U0AAA");
        // 08:30 EDT on the next Monday: still the first shift.
        assert_eq!(r.shift_at(utc(2026, 3, 9, 12, 30)).primary.as_str(), "U0AAA");
        // 09:30 EDT: already the second shift, although fewer than 7x24 hours have passed.
        let second = r.shift_at(utc(2026, 3, 9, 13, 30));
        assert_eq!(second.primary.as_str(), "U0BBB");
        assert_eq!(second.starts_at, utc(2026, 3, 9, 13, 0));
    }

    #[test]
    fn handoff_keeps_local_time_across_fall_back() {
        // Berlin leaves CEST on 2026-10-25. 09:00 CEST = 07:00 UTC; 09:00 CET = 08:00 UTC.
        let r = weekly(chrono_tz::Europe::Berlin, naive(2026, 10, 19, 9, 0));
        assert_eq!(r.shift_at(utc(2026, 10, 26, 7, 30)).primary.as_str(), "U0AAA");
        let second = r.shift_at(utc(2026, 10, 26, 8, 0));
        assert_eq!(second.primary.as_str(), "U0BBB");
        assert_eq!(second.starts_at, utc(2026, 10, 26, 8, 0));
    }

    #[test]
    fn handoff_inside_a_dst_gap_happens_when_the_clock_resumes() {
        // 02:30 on 2026-03-08 does not exist in New York; a daily 02:30 hand-off that day happens at 03:00 EDT.
        let r = Rotation::new(
            users(&["U0AAA", "U0BBB"]),
            naive(2026, 3, 7, 2, 30),
            chrono_tz::America::New_York,
            TimeDelta::days(1),
        )
        .unwrap();
        let shift = r.shift_at(utc(2026, 3, 8, 7, 5));
        assert_eq!(shift.primary.as_str(), "U0BBB");
        assert_eq!(shift.starts_at, utc(2026, 3, 8, 7, 0));
    }

    #[test]
    fn one_member_team_has_no_next() {
        let r = Rotation::new(users(&["U0AAA"]), naive(2026, 1, 1, 0, 0), chrono_tz::UTC, TimeDelta::days(7)).unwrap();
        let shift = r.shift_at(utc(2026, 6, 1, 0, 0));
        assert_eq!(shift.primary.as_str(), "U0AAA");
        assert_eq!(shift.next, None);
        assert!(r.after_primary(utc(2026, 6, 1, 0, 0)).is_empty());
    }

    #[test]
    fn escalation_order_follows_the_rotation_from_the_primary() {
        let r = weekly(chrono_tz::UTC, naive(2026, 11, 2, 9, 0));
        let order: Vec<&str> = r.after_primary(utc(2026, 11, 10, 0, 0)).iter().map(|u| u.as_str()).collect();
        assert_eq!(order, ["U0CCC", "U0AAA"]);
    }

    #[test]
    fn invalid_rotations_are_refused() {
        let start = naive(2026, 1, 1, 0, 0);
        assert_eq!(Rotation::new(vec![], start, chrono_tz::UTC, TimeDelta::days(1)), Err(RotationError::NoMembers));
        assert_eq!(
            Rotation::new(users(&["U0AAA"]), start, chrono_tz::UTC, TimeDelta::zero()),
            Err(RotationError::ZeroLength)
        );
        assert!(matches!(
            Rotation::new(users(&["U0AAA", "U0AAA"]), start, chrono_tz::UTC, TimeDelta::days(1)),
            Err(RotationError::DuplicateMember(_))
        ));
    }
}
