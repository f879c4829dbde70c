//! mcgate: an 802.1X-gated multicast access controller for Linux access switches.

pub mod auth;
pub mod capture;
pub mod cli;
pub mod daemon;
pub mod dataplane;
pub mod radius;
pub mod store;
pub mod sys;
pub mod wire;
