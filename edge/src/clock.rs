//! The worker's clock: `Date.now()` from the JS runtime. Only callable inside the Workers
//! runtime (natively it panics), so pure modules stay generic over their clock and only the
//! glue and this module touch it.

use core::time::Duration;

use governor::clock::Clock;
use governor::nanos::Nanos;

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// The current time as an HTTP date (`Sat, 28 Nov 2026 01:40:00 GMT`, RFC 9110 IMF-fixdate),
/// made once per second per isolate: a `Date` header on every answer costs a clock read.
pub fn http_date() -> String {
    thread_local! {
        static LAST: core::cell::RefCell<(u64, String)> = const { core::cell::RefCell::new((0, String::new())) };
    }
    let secs = now_ms() / 1000;
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs || last.1.is_empty() {
            *last = (secs, imf_fixdate(secs));
        }
        last.1.clone()
    })
}

/// `secs` since the epoch as an IMF-fixdate (RFC 9110 §5.6.7), in UTC.
pub fn imf_fixdate(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month (1–12) and day (1–31) of the `days`th day after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Milliseconds-based wall clock for the limiter; natively the tests use
/// `governor::clock::FakeRelativeClock`.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsClock;

impl Clock for JsClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(Duration::from_millis(now_ms()))
    }
}

#[cfg(test)]
mod tests {
    use super::imf_fixdate;

    #[test]
    fn dates_are_imf_fixdates() {
        assert_eq!(imf_fixdate(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(imf_fixdate(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT"); // RFC 9110's
        assert_eq!(imf_fixdate(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(imf_fixdate(1_709_164_800), "Thu, 29 Feb 2024 00:00:00 GMT");
        assert_eq!(imf_fixdate(1_798_761_599), "Thu, 31 Dec 2026 23:59:59 GMT");
        assert_eq!(imf_fixdate(1_798_761_600), "Fri, 01 Jan 2027 00:00:00 GMT");
        assert_eq!(imf_fixdate(1_795_833_600), "Sat, 28 Nov 2026 02:40:00 GMT");
        assert_eq!(imf_fixdate(4_107_542_399), "Sun, 28 Feb 2100 23:59:59 GMT"); // 2100: no 29 Feb
    }
}
