//! Origin end-to-end tests: one binary, a module per feature, each test with its own database
//! and Redis namespace (or private Redis).

mod accounts;
mod backends;
mod cache;
mod catalog;
mod common;
mod fleet;
mod health;
mod plans;
mod purge;
mod ratelimit;
mod resilience;
mod roles;
mod sync;
