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
