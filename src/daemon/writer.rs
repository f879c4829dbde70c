//! The journal's writer: the core's batches committed on a thread of their own, so that
//! the core goes on deciding (joins, EAP, replies) while the disk syncs. A commit is an
//! fdatasync: 0.43 ms at the median on the development machine's disk but 67 ms at p99
//! and over 100 ms at times, and everything that arrived meanwhile waited for it while the
//! core committed on its own thread (docs/architecture.md "Durability rules").
//!
//! One batch at a time, in order: the next waits for the last one's result, which comes
//! back to the core as an input of a step ([`Input::Committed`]); what must wait for
//! durability (a port opened to a session, a record's first send, a CoA answer, a failed
//! batch's revocations) waits for that input. As an input it is on a recording's tape,
//! and a replay gets the recorded result at the recorded step.
//!
//! Hand-written: a thread and two channels; no crate does less.

use super::input::Input;
use crate::store::{Batch, Store};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Instant;
use tracing::{error, warn};

/// A batch for the writer; `reopen`: the last commit failed, and redb wants the database
/// opened again after an I/O error (a full disk) before it takes another.
pub(super) struct Job {
    batch: Arc<Batch>,
    reopen: bool,
}

pub(super) enum Writer {
    /// On the core's thread, at once; the result is the core's next input within the same
    /// step (the core's unit tests, on fakes: steps stay deterministic).
    Inline { done: Option<Input> },
    /// The result is given as an input (a replay's recorded one, or a unit test's), and
    /// the batch is committed when it comes, if it says the batch was.
    Deferred,
    /// A thread of its own; results go to `done` (the run loop's).
    Thread {
        jobs: Option<mpsc::Sender<Job>>,
        thread: Option<JoinHandle<()>>,
        done: tokio::sync::mpsc::UnboundedSender<Input>,
    },
}

impl Default for Writer {
    fn default() -> Self {
        Writer::Inline { done: None }
    }
}

impl Writer {
    /// Starts the writer thread; its results go to `done`.
    pub fn thread(store: Arc<Store>, done: tokio::sync::mpsc::UnboundedSender<Input>) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let results = done.clone();
        let thread = std::thread::Builder::new().name("journal".into()).spawn(move || {
            for Job { batch, reopen } in queue {
                if results.send(commit(&store, &batch, reopen)).is_err() {
                    // the core is gone (a stop): nothing waits for this result
                    break;
                }
            }
        })?;
        Ok(Writer::Thread { jobs: Some(jobs), thread: Some(thread), done })
    }

    /// Takes `batch` to commit; its result comes as an input.
    pub fn hand(&mut self, store: &Store, batch: Arc<Batch>, reopen: bool) {
        match self {
            Writer::Inline { done } => *done = Some(commit(store, &batch, reopen)),
            Writer::Deferred => {}
            Writer::Thread { jobs, done, .. } => {
                let sent = jobs.as_ref().map(|j| j.send(Job { batch, reopen }));
                if !matches!(sent, Some(Ok(()))) {
                    // the thread ended (it panicked): every commit fails from now on,
                    // and what needs one is refused (fail closed)
                    let result = Err("the journal writer is gone".to_string());
                    let _ = done.send(Input::Committed { result, took: 0 });
                }
            }
        }
    }

    /// The result of an inline commit, for the step to take as its next input.
    pub fn take_inline(&mut self) -> Option<Input> {
        match self {
            Writer::Inline { done } => done.take(),
            _ => None,
        }
    }

    /// A deferred writer's given result: the batch committed to the store if it says so;
    /// the sequence numbers it gets there must be the given ones (a replay's recorded).
    pub fn replayed(&self, store: &Store, batch: &Batch, recorded: &Result<Vec<u64>, String>) -> Result<(), String> {
        if !matches!(self, Writer::Deferred) {
            return Ok(());
        }
        let Ok(recorded) = recorded else { return Ok(()) };
        match store.commit(batch) {
            Ok(made) if made == *recorded => Ok(()),
            made => Err(format!("a commit recorded as {recorded:?} made {made:?} in the replay")),
        }
    }
}

/// Commits `batch` (after opening the database again, `reopen`), timed: the result as the
/// core's input.
fn commit(store: &Store, batch: &Batch, reopen: bool) -> Input {
    if reopen {
        if let Err(e) = store.reopen() {
            error!("reopening the database: {e}");
        }
    }
    let t0 = Instant::now();
    let result = store.commit(batch).map_err(|e| e.to_string());
    let took = t0.elapsed().as_micros().try_into().unwrap_or(u64::MAX);
    Input::Committed { result, took }
}

impl Drop for Writer {
    /// The thread ends after the batch it has (the store closes with it: a hand-over's
    /// next process opens it).
    fn drop(&mut self) {
        if let Writer::Thread { jobs, thread, .. } = self {
            jobs.take();
            if let Some(t) = thread.take() {
                if t.join().is_err() {
                    warn!("the journal writer had panicked");
                }
            }
        }
    }
}
