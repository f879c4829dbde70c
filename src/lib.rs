//! mcgate: an 802.1X-gated multicast access controller for Linux access switches.
//!
//! Layout: `wire` (bytes ↔ types) ← `auth`, `radius` (sans-IO state machines) ← `daemon`
//! (the actor and its I/O tasks). Kernel access is behind `dataplane` and `capture`; the
//! only `unsafe` is in `sys`.
#![deny(unsafe_code)]

pub mod acct;
pub mod auth;
pub mod capture;
pub mod catalogue;
pub mod cli;
pub mod daemon;
pub mod dataplane;
pub mod duration;
pub mod fuzz;
pub mod hash;
pub mod mcast;
pub mod mono;
pub mod policy;
pub mod radius;
pub mod rate;
pub mod store;
#[allow(unsafe_code)]
pub mod sys;
pub mod teardown;
pub mod wire;
