//! mcgate: an 802.1X-gated multicast access controller for Linux access switches.

pub mod radius;
pub mod wire;
pub mod auth;
pub mod dataplane;
pub mod sys;
pub mod store;
pub mod capture;
pub mod daemon;
pub mod cli;
