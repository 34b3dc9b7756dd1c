//! Schedules: `cron` and `every`.
//!
//! A schedule only answers "what is the first due time strictly after `t`?". The engine
//! stores each task's next due time in the `fluid_schedules` table and advances it with a
//! compare-and-set, so each due time fires once, even with many hosts on one database.
//! Due times sit on a fixed grid (`every`: the first due time plus whole periods; `cron`:
//! matching minutes), so lateness of one fire never shifts the next (no drift).
//!
//! Cron semantics follow aio-fluid (and huey): five fields `minute hour day month
//! day_of_week`, each `*`, `n`, `m-n`, `*/n`, `m-n/s` or a comma list of those; day of week
//! 0-7 with 0 and 7 both Sunday; all fields are ANDed, including day and day-of-week
//! (Vixie cron ORs those two). Times are UTC; seconds are ignored.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration as StdDuration;

/// When a task queues itself: attached to a [`Task`](super::Task), the host queues one run
/// per due time, once across every host sharing the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Due at every minute matching a five-field crontab, in UTC.
    Cron(Cron),
    /// Due at a fixed period, optionally delayed and jittered.
    Every(Every),
}

impl Schedule {
    /// `every(period)` with no initial delay and no jitter.
    pub fn every(period: StdDuration) -> Schedule {
        Schedule::Every(Every { period, delay: StdDuration::ZERO, jitter: StdDuration::ZERO })
    }

    /// Parses a five-field cron expression.
    pub fn cron(expr: &str) -> Result<Schedule, CronError> {
        Cron::parse(expr).map(Schedule::Cron)
    }

    /// The first due time when a schedule is seen for the first time at `now`.
    pub fn first_due(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Every(e) => now.checked_add_signed(to_chrono(e.delay)).unwrap_or(DateTime::<Utc>::MAX_UTC),
            Schedule::Cron(c) => c.next_after(now).unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }

    /// The first grid point strictly after `now`, for a schedule whose last due time was
    /// `due`. Due times missed in between are skipped (the documented misfire policy).
    /// A grid point past the last time there is is that time: never a panic.
    pub fn next_due(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Every(e) => {
                if now < due {
                    return due;
                }
                // In i128 microseconds: no gap or period can overflow it.
                let gap = now - due;
                let behind = gap.num_microseconds().map_or(gap.num_milliseconds() as i128 * 1000, i128::from);
                let step = (e.period.as_micros() as i128).max(1000);
                plus_micros(due, (behind / step + 1) * step)
            }
            Schedule::Cron(c) => c.next_after(now.max(due)).unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }

    /// Extra delay added to one fire (jitter), not to the grid.
    pub fn jitter(&self) -> StdDuration {
        match self {
            Schedule::Every(e) if !e.jitter.is_zero() => e.jitter.mul_f64(fastrand::f64()),
            _ => StdDuration::ZERO,
        }
    }
}

impl fmt::Display for Schedule {
    /// The aio-fluid `TaskInfo.schedule` text: `every(0:00:02)` or
    /// `crontab(minute *; hour *; day *; month *; day_of_week *)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(e) => {
                let secs = e.period.as_secs();
                write!(f, "every({}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)?;
                let micros = e.period.subsec_micros();
                if micros > 0 {
                    write!(f, ".{micros:06}")?;
                }
                f.write_str(")")
            }
            Schedule::Cron(c) => write!(
                f,
                "crontab(minute {}; hour {}; day {}; month {}; day_of_week {})",
                c.source[0], c.source[1], c.source[2], c.source[3], c.source[4]
            ),
        }
    }
}

fn to_chrono(d: StdDuration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

/// `t` plus `us` microseconds (not negative), or the last time there is when past it.
fn plus_micros(t: DateTime<Utc>, us: i128) -> DateTime<Utc> {
    let nanos = (us % 1_000_000) as u32 * 1000;
    i64::try_from(us / 1_000_000)
        .ok()
        .and_then(|secs| Duration::new(secs, nanos))
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `every(period)`: due times `first, first + period, ...`; the first is `delay` after the
/// schedule is first seen; each fire may start up to `jitter` later (drawn per fire).
#[derive(Debug, Clone, PartialEq)]
pub struct Every {
    /// Time between two due times; periods under a millisecond count as one millisecond.
    pub period: StdDuration,
    /// How long after the schedule is first seen the first run is due.
    pub delay: StdDuration,
    /// Upper bound of the random extra delay of each fire, so many hosts or tasks on the
    /// same period do not all start at once. It never moves the grid.
    pub jitter: StdDuration,
}

/// A cron expression that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression {expr:?}: {reason}")]
pub struct CronError {
    /// The expression as given.
    pub expr: String,
    /// What is wrong with it, naming the offending field.
    pub reason: String,
}

/// A parsed crontab. Fields are ANDed (aio-fluid semantics).
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    minutes: BTreeSet<u32>,
    hours: BTreeSet<u32>,
    days: BTreeSet<u32>,
    months: BTreeSet<u32>,
    /// 0 = Sunday .. 6 = Saturday (7 folded into 0).
    weekdays: BTreeSet<u32>,
    source: [String; 5],
}

impl Cron {
    /// Parses `minute hour day month day_of_week`.
    pub fn parse(expr: &str) -> Result<Cron, CronError> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError {
                expr: expr.into(),
                reason: format!("expected 5 fields (minute hour day month day_of_week), got {}", fields.len()),
            });
        }
        Cron::from_fields(fields[0], fields[1], fields[2], fields[3], fields[4]).map_err(|reason| CronError { expr: expr.into(), reason })
    }

    /// aio-fluid's `crontab(minute, hour, day, month, day_of_week)`.
    pub fn from_fields(minute: &str, hour: &str, day: &str, month: &str, day_of_week: &str) -> Result<Cron, String> {
        let mut weekdays = parse_field("day_of_week", day_of_week, 0, 7, false)?;
        if weekdays.remove(&7) {
            weekdays.insert(0);
        }
        Ok(Cron {
            minutes: parse_field("minute", minute, 0, 59, true)?,
            hours: parse_field("hour", hour, 0, 23, true)?,
            days: parse_field("day", day, 1, 31, true)?,
            months: parse_field("month", month, 1, 12, true)?,
            weekdays,
            source: [minute, hour, day, month, day_of_week].map(str::to_string),
        })
    }

    /// Whether the minute containing `t` matches every field.
    pub fn matches(&self, t: DateTime<Utc>) -> bool {
        self.day_matches(t.date_naive()) && self.hours.contains(&t.hour()) && self.minutes.contains(&t.minute())
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        self.months.contains(&d.month()) && self.days.contains(&d.day()) && self.weekdays.contains(&d.weekday().num_days_from_sunday())
    }

    /// The first matching minute strictly after `t`, searching five years ahead
    /// (None for a spec that never matches, such as 30 February).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = t.with_second(0)?.with_nanosecond(0)?.checked_add_signed(Duration::minutes(1))?;
        let mut day = start.date_naive();
        for _ in 0..(366 * 5) {
            if self.day_matches(day) {
                for &h in &self.hours {
                    for &m in &self.minutes {
                        let candidate = Utc.from_utc_datetime(&day.and_hms_opt(h, m, 0)?);
                        if candidate >= start {
                            return Some(candidate);
                        }
                    }
                }
            }
            day = day.succ_opt()?;
        }
        None
    }
}

fn parse_field(name: &str, spec: &str, min: u32, max: u32, step_on_star: bool) -> Result<BTreeSet<u32>, String> {
    let mut out = BTreeSet::new();
    let number = |s: &str| -> Result<u32, String> {
        let n: u32 = s.parse().map_err(|_| format!("{name}: {s:?} is not a number"))?;
        if n < min || n > max {
            return Err(format!("{name}: {n} is outside {min}-{max}"));
        }
        Ok(n)
    };
    for part in spec.split(',') {
        let part = part.trim();
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("{name}: bad step {s:?}"))?;
                if step == 0 {
                    return Err(format!("{name}: step must be positive"));
                }
                if r == "*" && !step_on_star {
                    return Err(format!("{name}: */n is not allowed"));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (number(a)?, number(b)?);
            if a > b {
                return Err(format!("{name}: range {a}-{b} is backwards"));
            }
            (a, b)
        } else {
            let n = number(range)?;
            (n, if step > 1 { max } else { n })
        };
        out.extend((lo..=hi).step_by(step as usize));
    }
    if out.is_empty() {
        return Err(format!("{name}: empty field"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cron(m: &str, h: &str, d: &str, mo: &str, dow: &str) -> Cron {
        Cron::from_fields(m, h, d, mo, dow).unwrap()
    }

    // Vectors from aio-fluid's tests/scheduler/test_crontab.py.
    #[test]
    fn crontab_month_matches_lists_ranges_and_steps() {
        let c = cron("*", "*", "*", "1,4,*/6,8-9", "*");
        for (month, ok) in
            [(1, true), (2, false), (4, true), (5, false), (6, false), (7, true), (8, true), (9, true), (10, false), (12, false)]
        {
            let t = Utc.with_ymd_and_hms(2024, month, 1, 0, 0, 0).unwrap();
            assert_eq!(c.matches(t), ok, "month {month}");
        }
    }

    #[test]
    fn crontab_day_matches_lists_ranges_and_steps() {
        let c = cron("*", "*", "1,4,*/6,8-9", "*", "*");
        for (day, ok) in
            [(1, true), (2, false), (4, true), (6, false), (7, true), (8, true), (9, true), (10, false), (13, true), (25, true), (31, true)]
        {
            let t = Utc.with_ymd_and_hms(2024, 1, day, 0, 0, 0).unwrap();
            assert_eq!(c.matches(t), ok, "day {day}");
        }
    }

    #[test]
    fn crontab_hour_and_minute_steps_start_at_zero() {
        let c = cron("*/16", "*/5", "*", "*", "*");
        let minutes: Vec<u32> = c.minutes.iter().copied().collect();
        assert_eq!(minutes, [0, 16, 32, 48]);
        assert!(c.hours.contains(&0) && c.hours.contains(&20) && !c.hours.contains(&21));
    }

    #[test]
    fn crontab_sunday_is_zero_or_seven_and_ranges_may_end_on_seven() {
        let sunday = Utc.with_ymd_and_hms(2024, 1, 7, 10, 0, 0).unwrap();
        let monday = sunday + Duration::days(1);
        assert!(cron("*", "*", "*", "*", "0").matches(sunday));
        assert!(cron("*", "*", "*", "*", "7").matches(sunday));
        let weekend = cron("*", "*", "*", "*", "6-7");
        assert!(weekend.matches(sunday));
        assert!(!weekend.matches(monday));
    }

    #[test]
    fn crontab_ands_day_and_day_of_week_unlike_vixie() {
        // The 13th AND a Friday: 2024-09-13 is a Friday, 2024-10-13 is a Sunday.
        let c = cron("0", "0", "13", "*", "5");
        assert!(c.matches(at("2024-09-13T00:00:00Z")));
        assert!(!c.matches(at("2024-10-13T00:00:00Z")));
        assert!(!c.matches(at("2024-09-20T00:00:00Z")));
        assert_eq!(c.next_after(at("2024-09-13T00:00:00Z")), Some(at("2024-12-13T00:00:00Z")));
    }

    #[test]
    fn crontab_rejects_invalid_specs() {
        for (m, h, d, mo, dow) in [
            ("60", "*", "*", "*", "*"),
            ("*", "24", "*", "*", "*"),
            ("*", "*", "0", "*", "*"),
            ("*", "*", "*", "13", "*"),
            ("*", "*", "*", "*", "8"),
            ("*", "*", "*", "*", "*/2"),
            ("x", "*", "*", "*", "*"),
            ("5-1", "*", "*", "*", "*"),
        ] {
            assert!(Cron::from_fields(m, h, d, mo, dow).is_err(), "{m} {h} {d} {mo} {dow}");
        }
        assert!(Schedule::cron("* * * *").is_err());
        assert!(Schedule::cron("*/5 * * * *").is_ok());
    }

    #[test]
    fn cron_next_due_is_the_next_matching_minute_and_fires_once_per_minute() {
        let s = Schedule::cron("*/15 * * * *").unwrap();
        let t = at("2024-05-01T10:07:31Z");
        let first = s.first_due(t);
        assert_eq!(first, at("2024-05-01T10:15:00Z"));
        // At the due minute itself the next one is a whole period later: never twice a minute.
        assert_eq!(s.next_due(first, at("2024-05-01T10:15:00.5Z")), at("2024-05-01T10:30:00Z"));
        assert_eq!(Schedule::cron("0 0 30 2 *").unwrap().first_due(t), DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn every_stays_on_its_grid_when_fired_late() {
        let s = Schedule::every(StdDuration::from_secs(10));
        let first = at("2024-05-01T10:00:00Z");
        // Fired 3 s late: the next due time is still first + 10 s, not now + 10 s.
        assert_eq!(s.next_due(first, at("2024-05-01T10:00:03Z")), at("2024-05-01T10:00:10Z"));
        // Down for 35 s: the missed due times are skipped, the grid is kept.
        assert_eq!(s.next_due(first, at("2024-05-01T10:00:35Z")), at("2024-05-01T10:00:40Z"));
    }

    #[test]
    fn due_times_past_the_last_time_there_is_saturate_instead_of_panicking() {
        let (now, end) = (at("2024-05-01T10:00:00Z"), DateTime::<Utc>::MAX_UTC);
        let huge = Schedule::every(StdDuration::from_secs(u64::MAX));
        assert_eq!(huge.first_due(now), now);
        assert_eq!(huge.next_due(now, now), end);
        assert_eq!(huge.next_due(DateTime::<Utc>::MIN_UTC, end), end);
        // A period chrono holds, whose next due time the calendar does not.
        assert_eq!(Schedule::every(StdDuration::from_secs(300_000 * 366 * 86_400)).next_due(now, now), end);
        let late = Schedule::Every(Every { period: StdDuration::from_secs(1), delay: StdDuration::MAX, jitter: StdDuration::ZERO });
        assert_eq!(late.first_due(now), end);
        let minutely = Schedule::cron("* * * * *").unwrap();
        assert_eq!((minutely.first_due(end), minutely.next_due(end, end)), (end, end));
        // Far behind, the grid is still kept exactly.
        let s = Schedule::every(StdDuration::from_secs(10));
        assert_eq!(s.next_due(DateTime::<Utc>::MIN_UTC, end), end);
        assert_eq!(s.next_due(at("1970-01-01T00:00:00Z"), at("2024-05-01T10:00:05Z")), at("2024-05-01T10:00:10Z"));
    }

    #[test]
    fn every_initial_delay_and_jitter_bounds() {
        let s = Schedule::Every(Every {
            period: StdDuration::from_secs(2),
            delay: StdDuration::from_secs(5),
            jitter: StdDuration::from_millis(300),
        });
        let now = at("2024-05-01T10:00:00Z");
        assert_eq!(s.first_due(now), at("2024-05-01T10:00:05Z"));
        for _ in 0..200 {
            assert!(s.jitter() <= StdDuration::from_millis(300));
        }
        assert_eq!(s.to_string(), "every(0:00:02)");
        assert_eq!(Schedule::cron("0 1 * 1,4 *").unwrap().to_string(), "crontab(minute 0; hour 1; day *; month 1,4; day_of_week *)");
    }
}
