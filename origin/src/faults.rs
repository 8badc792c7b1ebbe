//! Fault injection for tests (`FAILPOINTS`, the `fail` crate), compiled to nothing unless the
//! `failpoints` feature is on (only the test crate turns it on).
//!
//! `fail`'s own `sleep(ms)` blocks the thread, which also stops the request deadline that should
//! cut the request short; [`delay`] waits asynchronously instead, so a test sees exactly what a
//! slow database does to a request: `FAILPOINTS=purchase::after_commit=return(4000)`.

/// Waits the milliseconds `FAILPOINTS` gives point `name` (`return(ms)`), if any.
pub async fn delay(name: &str) {
    if !cfg!(feature = "failpoints") {
        return;
    }
    let wait = fail::eval(name, |arg| arg.and_then(|ms| ms.trim().parse::<u64>().ok()));
    if let Some(Some(ms)) = wait {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}
