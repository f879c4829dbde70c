//! What the daemon's listening sockets (the control socket, the metrics endpoint) share:
//! an accept loop that backs off when accepting fails, and a bound on the connections
//! served at once.
//!
//! Accepting fails persistently when the process is out of descriptors (EMFILE) or the
//! system is (ENFILE): the pending connection stays queued, so retrying at once spins a
//! core without end. The loop waits instead, 10 ms doubling to 1 s, and logs at most
//! once a minute.

use crate::rate::LogLimit;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tracing::warn;

const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LAST_PAUSE: Duration = Duration::from_secs(1);

/// Accepts with `accept` for ever; each connection is served by `serve` on its own task
/// while a permit of `limit` is held. A connection beyond the limit is dropped at once
/// (closed) and `over_limit` is called.
pub(super) fn accept_loop<C, A, AF, S, SF>(
    what: &'static str,
    limit: usize,
    mut accept: A,
    serve: S,
    over_limit: impl Fn() + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    C: Send + 'static,
    A: FnMut() -> AF + Send + 'static,
    AF: Future<Output = std::io::Result<C>> + Send,
    S: Fn(C) -> SF + Send + Sync + 'static,
    SF: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limit));
    // accepting is cancel-safe: aborted (for a hand-over), a connection waits queued
    tokio::spawn(async move {
        let mut pause = FIRST_PAUSE;
        let mut log = LogLimit::per_minute(1);
        loop {
            let conn = match accept().await {
                Ok(c) => {
                    pause = FIRST_PAUSE;
                    c
                }
                Err(e) => {
                    if log.allow(Instant::now(), ()) {
                        warn!("{what}: accept failed: {e}; retrying in {pause:?} (logged once a minute)");
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(LAST_PAUSE);
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                over_limit();
                continue;
            };
            let served = serve(conn);
            tokio::spawn(async move {
                served.await;
                drop(permit);
            });
        }
    })
}
