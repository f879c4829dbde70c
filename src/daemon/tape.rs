//! Record and replay. With `[debug] record = "FILE"` the daemon writes, as JSON Lines,
//! the [`Start`], every step's inputs, and every output of the core in the order it
//! made them: frames and datagrams sent, kernel changes, journal commits, and the
//! kernel reads the core acts on (with what they read). `mcgate replay FILE` builds the
//! core from the start line and runs the steps through it; each output it makes must be
//! the next recorded one, and gets the recorded result (a send that failed fails again,
//! a read reads what the kernel held then). A field problem so becomes a test case.
//!
//! Not recorded: control responses and counters (they describe, they do not act), the
//! capture sockets' drop counts, and what the adapters decide before the core sees an
//! input (flood limits, the CoA reader's client check). The store the run started with
//! is copied next to the recording (`FILE.redb`) before it is opened.

use super::input::{Input, Now, Start};
use super::net::Net;
use crate::auth::PortId;
use crate::dataplane::netlink::{self, FdbEntry, Link};
use crate::dataplane::{Dataplane, Error as DpError, Found, MdbEntry, PortVlan};
use crate::store::{Batch, Op, Store};
use crate::wire::MacAddr;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::{self, BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A line of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    Start(Start),
    Step { at: Now, inputs: Vec<Input> },
    Output(Output),
}

/// What the core did (sends, changes, commits) or asked the kernel, with its result:
/// `error` is the error's text, `result` what a read returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Output {
    Frame {
        port: PortId,
        #[serde(with = "hex::serde")]
        frame: Vec<u8>,
        error: Option<String>,
    },
    Uplink {
        uplink: usize,
        #[serde(with = "hex::serde")]
        frame: Vec<u8>,
        error: Option<String>,
    },
    Radius {
        server: usize,
        #[serde(with = "hex::serde")]
        datagram: Vec<u8>,
        error: Option<String>,
    },
    Accounting {
        server: usize,
        #[serde(with = "hex::serde")]
        datagram: Vec<u8>,
        error: Option<String>,
    },
    DasAnswer {
        to: SocketAddr,
        #[serde(with = "hex::serde")]
        datagram: Vec<u8>,
        error: Option<String>,
    },
    Authorize {
        port: PortVlan,
        mac: MacAddr,
        error: Option<String>,
    },
    Deauthorize {
        port: PortVlan,
        mac: MacAddr,
        error: Option<String>,
    },
    MabLearning {
        port: String,
        on: bool,
        error: Option<String>,
    },
    MoveUntagged {
        port: String,
        from: u16,
        to: u16,
        error: Option<String>,
    },
    MdbAdd {
        port: PortVlan,
        group: IpAddr,
        source: Option<IpAddr>,
        error: Option<String>,
    },
    MdbDel {
        port: PortVlan,
        group: IpAddr,
        source: Option<IpAddr>,
        error: Option<String>,
    },
    /// A batch handed to the journal writer: state changes and records made durable at
    /// once; the result comes back as a step's input (`Input::Committed`).
    Handed {
        ops: Vec<Op>,
        records: Vec<crate::acct::Record>,
        delivered: Vec<u64>,
    },
    /// A journal commit on the core's own thread (delivery marks before a purge or
    /// the process's end), with its result.
    Commit {
        ops: Vec<Op>,
        records: Vec<crate::acct::Record>,
        delivered: Vec<u64>,
        error: Option<String>,
    },
    ReadLinks {
        result: Result<Vec<Link>, String>,
    },
    ReadFdb {
        result: Result<Vec<FdbEntry>, String>,
    },
    ReadAuthorized {
        ports: Vec<PortVlan>,
        result: Result<Vec<(PortVlan, MacAddr)>, String>,
    },
    ReadMdb {
        result: Result<Vec<(MdbEntry, bool)>, String>,
    },
    ReadUsage {
        port: String,
        group: IpAddr,
        result: Result<Option<(u64, u64)>, String>,
    },
}

/// Where the core's outputs go besides the world: nowhere, a recording, or a replay
/// that checks them against one.
#[derive(Clone, Default)]
pub(super) enum Tape {
    #[default]
    Off,
    Record(Recorder),
    Replay(Replayer),
}

impl Tape {
    pub fn start(&self, start: &Start) {
        if let Tape::Record(r) = self {
            r.line(&Line::Start(start.clone()));
        }
    }

    pub fn step(&self, at: Now, inputs: &[Input]) {
        match self {
            Tape::Off => {}
            Tape::Record(r) => r.line(&Line::Step { at, inputs: inputs.to_vec() }),
            // the replay checks what a step made around it (`replay`)
            Tape::Replay(_) => {}
        }
    }

    /// `batch` handed to the journal writer.
    pub fn handed(&self, batch: &Batch) {
        let output = || Output::Handed {
            ops: batch.ops.clone(),
            records: batch.records.clone(),
            delivered: batch.delivered.clone(),
        };
        match self {
            Tape::Off => {}
            Tape::Record(r) => r.line(&Line::Output(output())),
            Tape::Replay(r) => drop(r.next(output())),
        }
    }

    /// A replay that went another way than the recording (`why`); nothing elsewhere.
    pub fn diverge(&self, why: String) {
        if let Tape::Replay(r) = self {
            if let Ok(mut s) = r.0.lock() {
                s.diverged.get_or_insert(why);
            }
        }
    }

    /// Commits `batch` to `store` (in a replay: unless the recorded commit failed).
    pub fn commit(&self, store: &Store, batch: &Batch) -> Result<Vec<u64>, crate::store::Error> {
        let output = |error: Option<String>| Output::Commit {
            ops: batch.ops.clone(),
            records: batch.records.clone(),
            delivered: batch.delivered.clone(),
            error,
        };
        match self {
            Tape::Off => store.commit(batch),
            Tape::Record(r) => {
                let done = store.commit(batch);
                r.line(&Line::Output(output(done.as_ref().err().map(ToString::to_string))));
                done
            }
            Tape::Replay(r) => match r.next(output(None)).and_then(|o| error_of(&o)) {
                Some(e) => Err(crate::store::Error::Db(e)),
                None => store.commit(batch),
            },
        }
    }
}

/// Writes a recording; shared by the core and its wrapped sockets and kernel.
#[derive(Clone)]
pub(super) struct Recorder(Arc<Mutex<io::BufWriter<std::fs::File>>>);

impl Recorder {
    /// Creates `path` (mode 0600: it holds the seed and the RADIUS traffic) and copies
    /// the database the run starts with next to it, before the daemon opens it.
    pub fn create(path: &Path, database: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let copy = store_copy(path);
        let _ = std::fs::remove_file(&copy);
        if database.exists() {
            std::fs::copy(database, &copy)
                .with_context(|| format!("copying {} to {}", database.display(), copy.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating the recording {}", path.display()))?;
        Ok(Recorder(Arc::new(Mutex::new(io::BufWriter::new(file)))))
    }

    fn line(&self, line: &Line) {
        let Ok(mut w) = self.0.lock() else { return };
        // a recording that cannot be written is lost, the daemon goes on
        let _ = serde_json::to_writer(&mut *w, line).map_err(io::Error::from).and_then(|_| w.write_all(b"\n"));
        if matches!(line, Line::Step { .. } | Line::Start(_)) {
            let _ = w.flush();
        }
    }

    fn output(&self, o: Output) {
        self.line(&Line::Output(o));
    }
}

/// Where a recording keeps the database its run started with.
pub fn store_copy(recording: &Path) -> PathBuf {
    let mut name = recording.as_os_str().to_owned();
    name.push(".redb");
    PathBuf::from(name)
}

fn error_text<T, E: ToString>(r: &Result<T, E>) -> Option<String> {
    r.as_ref().err().map(ToString::to_string)
}

/// The recorded result of an output, by its field: `error` (`None`: it worked).
fn error_of(o: &Output) -> Option<String> {
    serde_json::to_value(o).ok()?.get("error")?.as_str().map(String::from)
}

/// ... or `result`, of a read.
fn result_of<R: DeserializeOwned>(o: Option<Output>) -> Result<R, String> {
    let o = o.ok_or("the replay diverged")?;
    let v = serde_json::to_value(&o).map_err(|e| e.to_string())?;
    let result: Result<R, String> = serde_json::from_value(v.get("result").cloned().unwrap_or_default())
        .map_err(|e| format!("a recorded result does not read back: {e}"))?;
    result
}

/// An output with its recorded result left out: what a replay must make again.
fn call_of(o: &Output) -> serde_json::Value {
    let mut v = serde_json::to_value(o).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.remove("error");
        m.remove("result");
    }
    v
}

/// The sockets, recorded.
pub(super) struct RecordNet {
    pub inner: Box<dyn Net>,
    pub rec: Recorder,
}

impl Net for RecordNet {
    fn send_frame(&mut self, port: PortId, frame: &[u8]) -> io::Result<()> {
        let done = self.inner.send_frame(port, frame);
        self.rec.output(Output::Frame { port, frame: frame.to_vec(), error: error_text(&done) });
        done
    }

    fn send_uplink(&mut self, uplink: usize, frame: &[u8]) -> io::Result<()> {
        let done = self.inner.send_uplink(uplink, frame);
        self.rec.output(Output::Uplink { uplink, frame: frame.to_vec(), error: error_text(&done) });
        done
    }

    fn send_radius(&mut self, server: usize, datagram: &[u8]) -> io::Result<()> {
        let done = self.inner.send_radius(server, datagram);
        self.rec.output(Output::Radius { server, datagram: datagram.to_vec(), error: error_text(&done) });
        done
    }

    fn send_accounting(&mut self, server: usize, datagram: &[u8]) -> io::Result<()> {
        let done = self.inner.send_accounting(server, datagram);
        self.rec.output(Output::Accounting { server, datagram: datagram.to_vec(), error: error_text(&done) });
        done
    }

    fn send_das(&mut self, to: SocketAddr, datagram: &[u8]) -> io::Result<()> {
        let done = self.inner.send_das(to, datagram);
        self.rec.output(Output::DasAnswer { to, datagram: datagram.to_vec(), error: error_text(&done) });
        done
    }

    fn capture_drops(&mut self) -> u64 {
        self.inner.capture_drops()
    }

    fn links(&mut self) -> Result<Vec<Link>, netlink::Error> {
        let done = self.inner.links();
        self.rec.output(Output::ReadLinks { result: done.as_ref().map(Clone::clone).map_err(ToString::to_string) });
        done
    }

    fn fdb(&mut self) -> Result<Vec<FdbEntry>, netlink::Error> {
        let done = self.inner.fdb();
        self.rec.output(Output::ReadFdb { result: done.as_ref().map(Clone::clone).map_err(ToString::to_string) });
        done
    }
}

/// The kernel, recorded: the core's changes and reads; the set-up's calls (made before
/// the core starts) pass through unrecorded.
pub(super) struct RecordDataplane {
    pub inner: Box<dyn Dataplane + Send>,
    pub rec: Recorder,
}

impl Dataplane for RecordDataplane {
    fn setup_port(&mut self, port: &str, mab: bool) -> Result<(), DpError> {
        self.inner.setup_port(port, mab)
    }

    fn set_mab_learning(&mut self, port: &str, on: bool) -> Result<(), DpError> {
        let done = self.inner.set_mab_learning(port, on);
        self.rec.output(Output::MabLearning { port: port.into(), on, error: error_text(&done) });
        done
    }

    fn authorize(&mut self, at: &PortVlan, mac: MacAddr) -> Result<(), DpError> {
        let done = self.inner.authorize(at, mac);
        self.rec.output(Output::Authorize { port: at.clone(), mac, error: error_text(&done) });
        done
    }

    fn deauthorize(&mut self, at: &PortVlan, mac: MacAddr) -> Result<(), DpError> {
        let done = self.inner.deauthorize(at, mac);
        self.rec.output(Output::Deauthorize { port: at.clone(), mac, error: error_text(&done) });
        done
    }

    fn authorized_on(&mut self, ats: &[PortVlan]) -> Result<Vec<(PortVlan, MacAddr)>, DpError> {
        let done = self.inner.authorized_on(ats);
        self.rec.output(Output::ReadAuthorized {
            ports: ats.to_vec(),
            result: done.as_ref().map(Clone::clone).map_err(ToString::to_string),
        });
        done
    }

    fn is_locked(&mut self, port: &str) -> Result<bool, DpError> {
        self.inner.is_locked(port)
    }

    fn vlan_protocol(&mut self, bridge: &str) -> Result<u16, DpError> {
        self.inner.vlan_protocol(bridge)
    }

    fn port_vlan(&mut self, port: &str) -> Result<Option<u16>, DpError> {
        self.inner.port_vlan(port)
    }

    fn move_untagged(&mut self, port: &str, from: u16, to: u16) -> Result<(), DpError> {
        let done = self.inner.move_untagged(port, from, to);
        self.rec.output(Output::MoveUntagged { port: port.into(), from, to, error: error_text(&done) });
        done
    }

    fn teardown_ports(&mut self, ats: &[PortVlan]) -> Result<(), DpError> {
        self.inner.teardown_ports(ats)
    }

    fn found(&mut self, bridge: &str, ports: &[&str]) -> Result<Found, DpError> {
        self.inner.found(bridge, ports)
    }

    fn restore(&mut self, bridge: &str, found: &Found) -> Result<(), DpError> {
        self.inner.restore(bridge, found)
    }

    fn setup_multicast(
        &mut self,
        bridge: &str,
        access: &[&str],
        uplinks: &[&str],
        max: u32,
        entries: u32,
        usage_pairs: u32,
    ) -> Result<(), DpError> {
        self.inner.setup_multicast(bridge, access, uplinks, max, entries, usage_pairs)
    }

    fn usage_uncounted(&mut self) -> Result<Option<(u64, u64)>, DpError> {
        self.inner.usage_uncounted()
    }

    fn setup_multicast_vlan(
        &mut self,
        bridge: &str,
        vid: u16,
        access: &[&str],
        uplinks: &[&str],
    ) -> Result<(), DpError> {
        self.inner.setup_multicast_vlan(bridge, vid, access, uplinks)
    }

    fn teardown_multicast(&mut self, bridge: &str, multicast_vlans: &[u16], found: &Found) -> Result<(), DpError> {
        self.inner.teardown_multicast(bridge, multicast_vlans, found)
    }

    fn mdb_add(&mut self, bridge: &str, at: &PortVlan, group: IpAddr, source: Option<IpAddr>) -> Result<(), DpError> {
        let done = self.inner.mdb_add(bridge, at, group, source);
        self.rec.output(Output::MdbAdd { port: at.clone(), group, source, error: error_text(&done) });
        done
    }

    fn mdb_del(&mut self, bridge: &str, at: &PortVlan, group: IpAddr, source: Option<IpAddr>) -> Result<(), DpError> {
        let done = self.inner.mdb_del(bridge, at, group, source);
        self.rec.output(Output::MdbDel { port: at.clone(), group, source, error: error_text(&done) });
        done
    }

    fn mdb_all(&mut self, bridge: &str) -> Result<Vec<(MdbEntry, bool)>, DpError> {
        let done = self.inner.mdb_all(bridge);
        self.rec.output(Output::ReadMdb { result: done.as_ref().map(Clone::clone).map_err(ToString::to_string) });
        done
    }

    fn usage(&mut self, port: &str, group: IpAddr) -> Result<Option<(u64, u64)>, DpError> {
        let done = self.inner.usage(port, group);
        self.rec.output(Output::ReadUsage {
            port: port.into(),
            group,
            result: done.as_ref().map(|u| *u).map_err(ToString::to_string),
        });
        done
    }
}

/// A recording being replayed: the outputs still to come, and the first divergence.
#[derive(Clone, Default)]
pub(super) struct Replayer(Arc<Mutex<ReplayState>>);

#[derive(Default)]
struct ReplayState {
    /// Recorded outputs not made yet, with their line numbers, up to the next step.
    expected: VecDeque<(usize, Output)>,
    /// What the replay made, for the caller to print.
    made: Vec<Output>,
    diverged: Option<String>,
}

impl Replayer {
    /// The next recorded output, which must be `made` (results aside); `None` once the
    /// replay has diverged.
    fn next(&self, made: Output) -> Option<Output> {
        let mut s = self.0.lock().ok()?;
        if s.diverged.is_some() {
            return None;
        }
        let Some((line, recorded)) = s.expected.pop_front() else {
            s.diverged = Some(format!("the replay made an output the recording does not have here: {}", json(&made)));
            return None;
        };
        if call_of(&recorded) != call_of(&made) {
            s.diverged = Some(format!("line {line}: recorded {}, the replay made {}", json(&recorded), json(&made)));
            return None;
        }
        s.made.push(recorded.clone());
        Some(recorded)
    }

    fn at_step(&self) {
        if let Ok(mut s) = self.0.lock() {
            if let (None, Some((line, o))) = (&s.diverged, s.expected.front()) {
                s.diverged = Some(format!("line {line}: recorded {}, which the replay did not make", json(o)));
            }
        }
    }

    fn expect(&self, outputs: impl IntoIterator<Item = (usize, Output)>) {
        if let Ok(mut s) = self.0.lock() {
            s.expected.extend(outputs);
        }
    }

    fn take_made(&self) -> Vec<Output> {
        self.0.lock().map(|mut s| std::mem::take(&mut s.made)).unwrap_or_default()
    }

    fn diverged(&self) -> Option<String> {
        self.0.lock().ok()?.diverged.clone()
    }

    fn send(&self, made: Output) -> io::Result<()> {
        match self.next(made) {
            Some(o) => error_of(&o).map_or(Ok(()), |e| Err(io::Error::other(e))),
            None => Err(io::Error::other("the replay diverged")),
        }
    }

    fn change(&self, made: Output) -> Result<(), DpError> {
        match self.next(made) {
            Some(o) => error_of(&o).map_or(Ok(()), |e| Err(DpError::Replayed(e))),
            None => Err(DpError::Replayed("the replay diverged".into())),
        }
    }

    fn read<R: DeserializeOwned>(&self, made: Output) -> Result<R, String> {
        result_of(self.next(made))
    }
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl Net for Replayer {
    fn send_frame(&mut self, port: PortId, frame: &[u8]) -> io::Result<()> {
        self.send(Output::Frame { port, frame: frame.to_vec(), error: None })
    }

    fn send_uplink(&mut self, uplink: usize, frame: &[u8]) -> io::Result<()> {
        self.send(Output::Uplink { uplink, frame: frame.to_vec(), error: None })
    }

    fn send_radius(&mut self, server: usize, datagram: &[u8]) -> io::Result<()> {
        self.send(Output::Radius { server, datagram: datagram.to_vec(), error: None })
    }

    fn send_accounting(&mut self, server: usize, datagram: &[u8]) -> io::Result<()> {
        self.send(Output::Accounting { server, datagram: datagram.to_vec(), error: None })
    }

    fn send_das(&mut self, to: SocketAddr, datagram: &[u8]) -> io::Result<()> {
        self.send(Output::DasAnswer { to, datagram: datagram.to_vec(), error: None })
    }

    fn capture_drops(&mut self) -> u64 {
        0
    }

    fn links(&mut self) -> Result<Vec<Link>, netlink::Error> {
        self.read(Output::ReadLinks { result: Ok(vec![]) }).map_err(netlink::Error::Replayed)
    }

    fn fdb(&mut self) -> Result<Vec<FdbEntry>, netlink::Error> {
        self.read(Output::ReadFdb { result: Ok(vec![]) }).map_err(netlink::Error::Replayed)
    }
}

impl Dataplane for Replayer {
    fn setup_port(&mut self, _: &str, _: bool) -> Result<(), DpError> {
        Err(DpError::Replayed("set-up is not replayed".into()))
    }

    fn set_mab_learning(&mut self, port: &str, on: bool) -> Result<(), DpError> {
        self.change(Output::MabLearning { port: port.into(), on, error: None })
    }

    fn authorize(&mut self, at: &PortVlan, mac: MacAddr) -> Result<(), DpError> {
        self.change(Output::Authorize { port: at.clone(), mac, error: None })
    }

    fn deauthorize(&mut self, at: &PortVlan, mac: MacAddr) -> Result<(), DpError> {
        self.change(Output::Deauthorize { port: at.clone(), mac, error: None })
    }

    fn authorized_on(&mut self, ats: &[PortVlan]) -> Result<Vec<(PortVlan, MacAddr)>, DpError> {
        self.read(Output::ReadAuthorized { ports: ats.to_vec(), result: Ok(vec![]) }).map_err(DpError::Replayed)
    }

    fn is_locked(&mut self, _: &str) -> Result<bool, DpError> {
        Err(DpError::Replayed("set-up is not replayed".into()))
    }

    fn move_untagged(&mut self, port: &str, from: u16, to: u16) -> Result<(), DpError> {
        self.change(Output::MoveUntagged { port: port.into(), from, to, error: None })
    }

    fn teardown_ports(&mut self, _: &[PortVlan]) -> Result<(), DpError> {
        Err(DpError::Replayed("teardown is not replayed".into()))
    }

    fn found(&mut self, _: &str, _: &[&str]) -> Result<Found, DpError> {
        Err(DpError::Replayed("set-up is not replayed".into()))
    }

    fn restore(&mut self, _: &str, _: &Found) -> Result<(), DpError> {
        Err(DpError::Replayed("teardown is not replayed".into()))
    }

    fn setup_multicast(&mut self, _: &str, _: &[&str], _: &[&str], _: u32, _: u32, _: u32) -> Result<(), DpError> {
        Err(DpError::Replayed("set-up is not replayed".into()))
    }

    fn teardown_multicast(&mut self, _: &str, _: &[u16], _: &Found) -> Result<(), DpError> {
        Err(DpError::Replayed("teardown is not replayed".into()))
    }

    fn mdb_add(&mut self, _: &str, at: &PortVlan, group: IpAddr, source: Option<IpAddr>) -> Result<(), DpError> {
        self.change(Output::MdbAdd { port: at.clone(), group, source, error: None })
    }

    fn mdb_del(&mut self, _: &str, at: &PortVlan, group: IpAddr, source: Option<IpAddr>) -> Result<(), DpError> {
        self.change(Output::MdbDel { port: at.clone(), group, source, error: None })
    }

    fn mdb_all(&mut self, _: &str) -> Result<Vec<(MdbEntry, bool)>, DpError> {
        self.read(Output::ReadMdb { result: Ok(vec![]) }).map_err(DpError::Replayed)
    }

    fn usage(&mut self, port: &str, group: IpAddr) -> Result<Option<(u64, u64)>, DpError> {
        self.read(Output::ReadUsage { port: port.into(), group, result: Ok(None) }).map_err(DpError::Replayed)
    }
}

/// What a replay came to.
pub struct Replayed {
    pub steps: usize,
    pub outputs: usize,
    /// The first place where the replay did not make what was recorded.
    pub diverged: Option<String>,
}

/// Replays the recording at `path` through a core configured by `loaded`, on a copy of
/// the database the run started with (in `scratch`); `each` gets every output made, in
/// order.
pub fn replay(
    loaded: &super::config::Loaded,
    path: &Path,
    scratch: &Path,
    mut each: impl FnMut(&Output),
) -> anyhow::Result<Replayed> {
    use anyhow::{anyhow, Context as _};
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut lines = Vec::new();
    for (i, line) in io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let parsed: Line = serde_json::from_str(&line).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        lines.push((i + 1, parsed));
    }
    let mut lines = lines.into_iter().peekable();
    let Some((_, Line::Start(start))) = lines.next() else {
        return Err(anyhow!("{}: the first line is not a start", path.display()));
    };
    let database = scratch.join("replay.redb");
    let _ = std::fs::remove_file(&database);
    let copy = store_copy(path);
    if copy.exists() {
        std::fs::copy(&copy, &database).with_context(|| format!("copying {}", copy.display()))?;
    }
    let store = Store::open(&database).with_context(|| format!("opening {}", database.display()))?;
    let replayer = Replayer::default();
    let outputs_until_step = |lines: &mut std::iter::Peekable<_>| {
        let mut out = Vec::new();
        while let Some((n, Line::Output(o))) = lines.next_if(|(_, l): &(usize, Line)| matches!(l, Line::Output(_))) {
            out.push((n, o));
        }
        out
    };
    replayer.expect(outputs_until_step(&mut lines));
    let epoch = std::time::Instant::now();
    let mut d = super::Daemon::build(
        loaded,
        &start,
        epoch,
        Box::new(replayer.clone()),
        (Arc::new(store), super::writer::Writer::Deferred),
        Box::new(replayer.clone()),
        Tape::Replay(replayer.clone()),
        None,
        None,
        vec![],
    )?;
    let (mut steps, mut outputs) = (0, 0);
    let mut emit = |made: Vec<Output>| {
        outputs += made.len();
        made.iter().for_each(&mut each);
    };
    emit(replayer.take_made());
    while let Some((n, line)) = lines.next() {
        let Line::Step { at, inputs } = line else {
            return Err(anyhow!("{}:{n}: a start in the middle", path.display()));
        };
        if replayer.diverged().is_some() {
            break;
        }
        // the outputs recorded after the step's line are the ones it is to make
        replayer.at_step();
        replayer.expect(outputs_until_step(&mut lines));
        d.step(at, inputs);
        steps += 1;
        emit(replayer.take_made());
    }
    replayer.at_step();
    Ok(Replayed { steps, outputs, diverged: replayer.diverged() })
}
