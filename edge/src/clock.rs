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

/// The current time as an HTTP date (`Sat, 28 Nov 2026 01:40:00 GMT`, RFC 9110 IMF-fixdate, which
/// is what `Date.prototype.toUTCString` prints).
pub fn http_date() -> String {
    String::from(js_sys::Date::new_0().to_utc_string())
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
