//! A schedule's calendar: five-field cron expressions, `@every <duration>`, `@hourly`,
//! `@daily` (and `@weekly`, `@monthly`), in an IANA time zone.
//!
//! The next tick is always computed from the calendar (the tick strictly after a moment),
//! never from when the last job ran, so nothing drifts. A cron tick is a wall-clock time in
//! the schedule's zone: `0 9 * * *` in `Europe/Berlin` is 09:00 there in summer and in
//! winter. A wall-clock time that does not exist (skipped by a daylight-saving change) fires
//! at the moment the clocks jumped to; one that happens twice fires once, at the first.
//! `@every` ticks are multiples of the period since the Unix epoch, whatever the zone.

use std::collections::BTreeSet;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// The shortest `@every` period, in seconds.
pub const MIN_EVERY_S: i64 = 1;
/// How far ahead a cron expression is searched for its next tick (it must fire within).
const SEARCH_DAYS: i32 = 366 * 5;

/// A parsed calendar in its zone.
#[derive(Debug, Clone)]
pub struct Calendar {
    kind: Kind,
    tz: TimeZone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Every(i64),
    Cron(Box<Cron>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cron {
    minutes: BTreeSet<u8>,
    hours: BTreeSet<u8>,
    days: BTreeSet<u8>,
    months: BTreeSet<u8>,
    /// 0 = Sunday.
    weekdays: BTreeSet<u8>,
    /// Both day fields restricted: a day matches either (as cron has always done).
    day_or_weekday: bool,
}

impl Calendar {
    /// Parses `spec` in the IANA zone `tz` (`None`: UTC). The error says which of the two is
    /// wrong and why.
    pub fn parse(spec: &str, tz: Option<&str>) -> Result<Self, CalendarError> {
        let tz = match tz.map(str::trim) {
            None | Some("") | Some("UTC") => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|_| {
                CalendarError::Zone(format!(
                    "unknown time zone {name:?} (an IANA name, e.g. Europe/Berlin)"
                ))
            })?,
        };
        let spec = spec.trim();
        let kind = if let Some(rest) = spec.strip_prefix("@every") {
            let text = rest.trim();
            let d = humantime_secs(text).ok_or_else(|| {
                CalendarError::Cron(format!(
                    "@every needs a duration such as 30s, 5m or 1h, not {text:?}"
                ))
            })?;
            if d < MIN_EVERY_S {
                return Err(CalendarError::Cron("@every is at least 1s".into()));
            }
            Kind::Every(d)
        } else {
            let expanded = match spec {
                "@hourly" => "0 * * * *",
                "@daily" | "@midnight" => "0 0 * * *",
                "@weekly" => "0 0 * * 0",
                "@monthly" => "0 0 1 * *",
                "@yearly" | "@annually" => "0 0 1 1 *",
                other if other.starts_with('@') => {
                    return Err(CalendarError::Cron(format!(
                        "unknown {other}; one of @every <duration>, @hourly, @daily, @weekly, @monthly"
                    )));
                }
                other => other,
            };
            Kind::Cron(Box::new(Cron::parse(expanded)?))
        };
        let cal = Calendar { kind, tz };
        if let Kind::Cron(_) = cal.kind
            && cal.next_after(0).is_none()
        {
            return Err(CalendarError::Cron(format!("{spec:?} never fires")));
        }
        Ok(cal)
    }

    /// The first tick strictly after `after_s` (Unix seconds); `None` when there is none
    /// within years (only an expression that can never fire, refused by `parse`).
    pub fn next_after(&self, after_s: i64) -> Option<i64> {
        match &self.kind {
            Kind::Every(p) => Some((after_s.div_euclid(*p) + 1) * p),
            Kind::Cron(c) => c.next_after(after_s, &self.tz),
        }
    }

    /// The ticks in `(after_s, up_to_s]`: how many (counted up to `cap`), and the latest.
    pub fn due(&self, after_s: i64, up_to_s: i64, cap: u32) -> (u32, Option<i64>) {
        if let Kind::Every(p) = &self.kind {
            let first = after_s.div_euclid(*p) + 1;
            let last = up_to_s.div_euclid(*p);
            if last < first {
                return (0, None);
            }
            let n = (last - first + 1).min(cap as i64) as u32;
            return (n, Some(last * p));
        }
        let mut n = 0;
        let mut latest = None;
        let mut at = after_s;
        while let Some(t) = self.next_after(at) {
            if t > up_to_s {
                break;
            }
            latest = Some(t);
            at = t;
            n += 1;
            if n >= cap {
                // Many missed: the latest is found from the day before `up_to_s`.
                let mut from = at.max(up_to_s - 2 * 86_400);
                while let Some(t) = self.next_after(from) {
                    if t > up_to_s {
                        break;
                    }
                    latest = Some(t);
                    from = t;
                }
                break;
            }
        }
        (n, latest)
    }
}

/// `30s`, `5m`, `1h30m`, `2d`: whole seconds.
fn humantime_secs(text: &str) -> Option<i64> {
    if text.is_empty() || text.starts_with('-') {
        return None;
    }
    let mut total: i64 = 0;
    let mut num = String::new();
    let mut any = false;
    let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            num.push(c);
            i += 1;
            continue;
        }
        let mut unit = String::new();
        while i < chars.len() && chars[i].is_ascii_alphabetic() {
            unit.push(chars[i]);
            i += 1;
        }
        let n: i64 = num.parse().ok()?;
        num.clear();
        let mult = match unit.as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 7 * 86_400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
        any = true;
    }
    if !num.is_empty() {
        return None;
    }
    any.then_some(total)
}

impl Cron {
    fn parse(spec: &str) -> Result<Self, CalendarError> {
        let fields: Vec<&str> = spec.split_whitespace().collect();
        let [min, hour, dom, mon, dow] = fields.as_slice() else {
            return Err(CalendarError::Cron(format!(
                "{spec:?} has {} fields; a cron expression has five (minute hour day month weekday), e.g. \"0 * * * *\"",
                fields.len()
            )));
        };
        const MONTHS: [&str; 12] = [
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        let mut weekdays = field("weekday", dow, 0, 7, &DAYS, 0)?;
        if weekdays.remove(&7) {
            weekdays.insert(0);
        }
        Ok(Cron {
            minutes: field("minute", min, 0, 59, &[], 0)?,
            hours: field("hour", hour, 0, 23, &[], 0)?,
            days: field("day of month", dom, 1, 31, &[], 0)?,
            months: field("month", mon, 1, 12, &MONTHS, 1)?,
            weekdays,
            day_or_weekday: !dom.starts_with('*') && !dow.starts_with('*'),
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        if !self.months.contains(&(d.month() as u8)) {
            return false;
        }
        let dom = self.days.contains(&(d.day() as u8));
        let dow = self
            .weekdays
            .contains(&(d.weekday().to_sunday_zero_offset() as u8));
        if self.day_or_weekday {
            dom || dow
        } else {
            dom && dow
        }
    }

    fn next_after(&self, after_s: i64, tz: &TimeZone) -> Option<i64> {
        let after = Timestamp::from_second(after_s).ok()?;
        let start: Zoned = after.to_zoned(tz.clone());
        let mut day = start.date();
        for _ in 0..SEARCH_DAYS {
            if self.day_matches(day) {
                for &h in &self.hours {
                    for &m in &self.minutes {
                        let civil = day.at(h as i8, m as i8, 0, 0);
                        let Ok(z) = tz.to_ambiguous_zoned(civil).compatible() else {
                            continue;
                        };
                        let t = z.timestamp().as_second();
                        if t > after_s {
                            return Some(t);
                        }
                    }
                }
            }
            day = day.tomorrow().ok()?;
        }
        None
    }
}

/// One cron field: `*`, `N`, `A-B`, `*/S`, `A-B/S`, `N/S` and lists of them; `names` are
/// accepted for the values from `first_name` on (months, weekdays).
fn field(
    what: &str,
    text: &str,
    lo: u8,
    hi: u8,
    names: &[&str],
    first_name: u8,
) -> Result<BTreeSet<u8>, CalendarError> {
    let bad = |why: String| CalendarError::Cron(format!("{what} field {text:?}: {why}"));
    let value = |s: &str| -> Result<u8, CalendarError> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(i as u8 + first_name);
        }
        let v: u8 = s
            .parse()
            .map_err(|_| bad(format!("{s:?} is not a number")))?;
        if v < lo || v > hi {
            return Err(bad(format!("{v} is outside {lo}-{hi}")));
        }
        Ok(v)
    };
    let mut out = BTreeSet::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let s: u8 = s
                    .parse()
                    .map_err(|_| bad(format!("step {s:?} is not a number")))?;
                if s == 0 {
                    return Err(bad("a step of 0".into()));
                }
                (r, s)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let a = value(range)?;
            (a, if step > 1 { hi } else { a })
        };
        if a > b {
            return Err(bad(format!("the range {a}-{b} is backwards")));
        }
        out.extend((a..=b).step_by(step as usize));
    }
    if out.is_empty() {
        return Err(bad("matches nothing".into()));
    }
    Ok(out)
}

/// Why a calendar was refused: its expression, or its zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("`cron`: {0}")]
    Cron(String),
    #[error("`tz`: {0}")]
    Zone(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_second()
    }

    fn show(t: i64) -> String {
        Timestamp::from_second(t).unwrap().to_string()
    }

    #[test]
    fn every_ticks_on_multiples_of_its_period_whenever_asked() {
        let c = Calendar::parse("@every 30s", None).unwrap();
        assert_eq!(
            c.next_after(at("2026-01-01T00:00:10Z")),
            Some(at("2026-01-01T00:00:30Z"))
        );
        // Strictly after: a tick is never its own next.
        assert_eq!(
            c.next_after(at("2026-01-01T00:00:30Z")),
            Some(at("2026-01-01T00:01:00Z"))
        );
        let h = Calendar::parse("@every 1h30m", Some("Europe/Berlin")).unwrap();
        assert_eq!(h.next_after(0), Some(5400));
        assert_eq!(
            c.due(at("2026-01-01T00:00:00Z"), at("2026-01-01T00:01:45Z"), 100),
            (3, Some(at("2026-01-01T00:01:30Z")))
        );
        assert_eq!(
            c.due(at("2026-01-01T00:00:00Z"), at("2026-01-01T00:00:29Z"), 100),
            (0, None)
        );
    }

    #[test]
    fn cron_fields_ranges_steps_lists_and_names() {
        let c = Calendar::parse("*/15 9-17 * * mon-fri", None).unwrap();
        // 2026-01-02 is a Friday; the next tick after Friday 17:50 is Monday 09:00.
        assert_eq!(
            show(c.next_after(at("2026-01-02T17:50:00Z")).unwrap()),
            "2026-01-05T09:00:00Z"
        );
        assert_eq!(
            show(c.next_after(at("2026-01-05T09:00:00Z")).unwrap()),
            "2026-01-05T09:15:00Z"
        );
        let hourly = Calendar::parse("@hourly", None).unwrap();
        assert_eq!(
            show(hourly.next_after(at("2026-01-05T09:00:00Z")).unwrap()),
            "2026-01-05T10:00:00Z"
        );
        // Day of month and weekday both given: either matches.
        let c = Calendar::parse("0 0 13 * 5", None).unwrap();
        assert_eq!(
            show(c.next_after(at("2026-01-03T00:00:00Z")).unwrap()),
            "2026-01-09T00:00:00Z"
        );
        assert_eq!(
            show(c.next_after(at("2026-01-10T00:00:00Z")).unwrap()),
            "2026-01-13T00:00:00Z"
        );
        let c = Calendar::parse("30 4 1,15 feb 7", None).unwrap();
        assert_eq!(
            show(c.next_after(at("2026-01-20T00:00:00Z")).unwrap()),
            "2026-02-01T04:30:00Z"
        );
    }

    #[test]
    fn a_daily_job_stays_at_its_wall_clock_time_across_daylight_saving() {
        let c = Calendar::parse("0 9 * * *", Some("Europe/Berlin")).unwrap();
        // Berlin moves to summer time on 2026-03-29.
        assert_eq!(
            show(c.next_after(at("2026-03-28T09:00:00Z")).unwrap()),
            "2026-03-29T07:00:00Z"
        );
        assert_eq!(
            show(c.next_after(at("2026-03-27T12:00:00Z")).unwrap()),
            "2026-03-28T08:00:00Z"
        );
        // And back on 2026-10-25.
        assert_eq!(
            show(c.next_after(at("2026-10-24T12:00:00Z")).unwrap()),
            "2026-10-25T08:00:00Z"
        );
    }

    #[test]
    fn a_skipped_wall_clock_time_fires_once_after_the_jump_and_a_repeated_one_once() {
        let c = Calendar::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        // 02:30 does not exist on 2026-03-29 (02:00 -> 03:00): it fires at 03:30 local.
        assert_eq!(
            show(c.next_after(at("2026-03-28T12:00:00Z")).unwrap()),
            "2026-03-29T01:30:00Z"
        );
        // 02:30 happens twice on 2026-10-25: only the first counts.
        let first = c.next_after(at("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(show(first), "2026-10-25T00:30:00Z");
        assert_eq!(show(c.next_after(first).unwrap()), "2026-10-26T01:30:00Z");
    }

    #[test]
    fn bad_expressions_and_zones_name_what_is_wrong() {
        let e = |spec: &str, tz: Option<&str>| Calendar::parse(spec, tz).unwrap_err().to_string();
        assert!(e("* * * *", None).contains("five"));
        assert!(e("61 * * * *", None).contains("minute field"));
        assert!(e("0 0 31 2 *", None).contains("never fires"));
        assert!(e("*/0 * * * *", None).contains("step of 0"));
        assert!(e("@every 0s", None).contains("at least 1s"));
        assert!(e("@every soon", None).starts_with("`cron`"));
        assert!(e("@fortnightly", None).contains("unknown @fortnightly"));
        assert!(e("@daily", Some("Mars/Olympus")).starts_with("`tz`"));
        assert!(Calendar::parse("@every 1s", Some("America/New_York")).is_ok());
    }
}
