//! Monthly billing cycles anchored on the day (and time of day, UTC) a subscription started.
//!
//! A cycle starts each month on the anchor's day, clamped to the month's length: an anchor on
//! Jan 31 gives Jan 31, Feb 28 (29), Mar 31. The calendar part (where months start) is done here;
//! the Redis scripts receive it as a [`MonthWindow`] and only clamp and compare, exactly like
//! [`cycle_containing`].

use time::{Date, Month, OffsetDateTime, Time};

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// Day of month and time of day a subscription's cycles start on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// 1..=31.
    pub day: u8,
    /// Milliseconds after midnight UTC.
    pub time_of_day_ms: i64,
}

impl Anchor {
    /// The anchor of a subscription that started at `anchor_ms`.
    pub fn from_ms(anchor_ms: i64) -> Anchor {
        let at = datetime(anchor_ms);
        Anchor {
            day: at.day(),
            time_of_day_ms: anchor_ms.rem_euclid(DAY_MS),
        }
    }
}

/// One billing cycle, `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cycle {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Cycle {
    /// Length of the cycle.
    pub fn length_ms(&self) -> i64 {
        self.end_ms - self.start_ms
    }
}

/// Start (UTC midnight, ms) of the month before the one containing a moment, of that month,
/// and of the two after it: enough to find the cycle containing the moment for any anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthWindow(pub [i64; 4]);

/// The window around `now_ms`.
pub fn month_window(now_ms: i64) -> MonthWindow {
    let now = datetime(now_ms);
    let (mut year, mut month) = (now.year(), now.month());
    // Step back one month, then collect four consecutive month starts.
    if month == Month::January {
        year -= 1;
    }
    month = month.previous();
    let mut starts = [0; 4];
    for start in &mut starts {
        *start = month_start_ms(year, month);
        if month == Month::December {
            year += 1;
        }
        month = month.next();
    }
    MonthWindow(starts)
}

/// The cycle of `anchor` that contains `now_ms`, given `month_window(now_ms)`.
pub fn cycle_containing(anchor: Anchor, window: MonthWindow, now_ms: i64) -> Cycle {
    let starts = window.0;
    // Cycle start in the month beginning at starts[i], the day clamped to the month's length.
    let start_in = |i: usize| {
        let days_in_month = (starts[i + 1] - starts[i]) / DAY_MS;
        starts[i] + (i64::from(anchor.day).min(days_in_month) - 1) * DAY_MS + anchor.time_of_day_ms
    };
    let this_month = start_in(1);
    if this_month <= now_ms {
        Cycle {
            start_ms: this_month,
            end_ms: start_in(2),
        }
    } else {
        Cycle {
            start_ms: start_in(0),
            end_ms: this_month,
        }
    }
}

/// Shorthand for `cycle_containing(anchor, month_window(now_ms), now_ms)`.
pub fn cycle_at(anchor: Anchor, now_ms: i64) -> Cycle {
    cycle_containing(anchor, month_window(now_ms), now_ms)
}

fn month_start_ms(year: i32, month: Month) -> i64 {
    let date = Date::from_calendar_date(year, month, 1).expect("valid calendar date");
    let at = date.with_time(Time::MIDNIGHT).assume_utc();
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

fn datetime(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .expect("timestamp within the supported range")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn ms(at: OffsetDateTime) -> i64 {
        (at.unix_timestamp_nanos() / 1_000_000) as i64
    }

    fn cycle(anchor: OffsetDateTime, now: OffsetDateTime) -> (i64, i64) {
        let c = cycle_at(Anchor::from_ms(ms(anchor)), ms(now));
        (c.start_ms, c.end_ms)
    }

    #[test]
    fn first_cycle_starts_at_the_anchor() {
        let a = datetime!(2026-01-15 10:30 UTC);
        assert_eq!(cycle(a, a), (ms(a), ms(datetime!(2026-02-15 10:30 UTC))));
    }

    #[test]
    fn jan_31_anchor_clamps_to_month_end_and_comes_back() {
        let a = datetime!(2026-01-31 08:00 UTC);
        assert_eq!(
            cycle(a, datetime!(2026-02-10 00:00 UTC)),
            (ms(a), ms(datetime!(2026-02-28 08:00 UTC)))
        );
        assert_eq!(
            cycle(a, datetime!(2026-02-28 08:00 UTC)),
            (
                ms(datetime!(2026-02-28 08:00 UTC)),
                ms(datetime!(2026-03-31 08:00 UTC))
            )
        );
        assert_eq!(
            cycle(a, datetime!(2026-03-31 07:59:59.999 UTC)),
            (
                ms(datetime!(2026-02-28 08:00 UTC)),
                ms(datetime!(2026-03-31 08:00 UTC))
            )
        );
        assert_eq!(
            cycle(a, datetime!(2026-04-30 09:00 UTC)),
            (
                ms(datetime!(2026-04-30 08:00 UTC)),
                ms(datetime!(2026-05-31 08:00 UTC))
            )
        );
    }

    #[test]
    fn leap_years_and_the_29th_and_30th() {
        let a = datetime!(2027-12-29 00:00 UTC);
        assert_eq!(
            cycle(a, datetime!(2028-02-29 00:00 UTC)),
            (
                ms(datetime!(2028-02-29 00:00 UTC)),
                ms(datetime!(2028-03-29 00:00 UTC))
            )
        );
        assert_eq!(
            cycle(a, datetime!(2027-02-28 12:00 UTC)),
            (
                ms(datetime!(2027-02-28 00:00 UTC)),
                ms(datetime!(2027-03-29 00:00 UTC))
            )
        );
        let a = datetime!(2026-01-30 23:59 UTC);
        assert_eq!(
            cycle(a, datetime!(2026-03-01 00:00 UTC)),
            (
                ms(datetime!(2026-02-28 23:59 UTC)),
                ms(datetime!(2026-03-30 23:59 UTC))
            )
        );
    }

    #[test]
    fn across_year_end_and_many_months_later() {
        let a = datetime!(2025-03-31 00:00 UTC);
        assert_eq!(
            cycle(a, datetime!(2026-01-05 00:00 UTC)),
            (
                ms(datetime!(2025-12-31 00:00 UTC)),
                ms(datetime!(2026-01-31 00:00 UTC))
            )
        );
        assert_eq!(
            cycle(a, datetime!(2026-12-31 00:00 UTC)),
            (
                ms(datetime!(2026-12-31 00:00 UTC)),
                ms(datetime!(2027-01-31 00:00 UTC))
            )
        );
    }

    #[test]
    fn every_moment_lies_in_its_cycle_and_cycles_chain() {
        let anchors = [
            datetime!(2024-01-31 23:00 UTC),
            datetime!(2024-02-29 00:00 UTC),
            datetime!(2024-05-30 12:00 UTC),
            datetime!(2024-07-01 00:00 UTC),
        ];
        for anchor in anchors {
            let anchor = Anchor::from_ms(ms(anchor));
            let mut now = ms(datetime!(2024-08-01 00:00 UTC));
            let mut prev: Option<Cycle> = None;
            // Three years in 7-hour steps: the window crosses every month kind.
            for _ in 0..(3 * 365 * 24 / 7) {
                let c = cycle_at(anchor, now);
                assert!(c.start_ms <= now && now < c.end_ms, "{anchor:?} {now}");
                let days = c.length_ms() / DAY_MS;
                assert!((28..=31).contains(&days), "{c:?}");
                if let Some(p) = prev {
                    assert!(p == c || p.end_ms == c.start_ms, "{p:?} then {c:?}");
                }
                prev = Some(c);
                now += 7 * 3_600_000;
            }
        }
    }
}
