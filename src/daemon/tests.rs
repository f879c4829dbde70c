//! The daemon's core without root: a recording fake of the kernel (FDB and MDB as sets,
//! every change logged), a recording fake of the sockets, a real store in a temporary
//! directory that can be made to fail, and RADIUS answers signed as a server would. What
//! the namespace tests show against the real peers, shown here on the rules themselves.

use super::*;
use crate::acct::{Kind, Record, Status, TerminateCause};
use crate::dataplane::netlink;
use crate::dataplane::{Error as DpError, Found, MdbEntry, PortVlan};
use crate::radius::{attr, encode_raw, sign_reply};
use crate::wire::igmp;
use crate::wire::records::{OwnedRecord, RecordType};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use writer::Writer;

const SECRET: &[u8] = b"testing123";
const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x11]);
const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x12]);
const STRANGER: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x99]);

/// `port` or `port:vlan`.
fn at(s: &str) -> PortVlan {
    s.parse().unwrap()
}

/// The kernel as the fake keeps it.
#[derive(Default)]
struct KernelState {
    fdb: BTreeSet<(PortVlan, MacAddr)>,
    mdb: BTreeSet<MdbEntry>,
    /// Every change asked for, in order (`authorize p1 02:..`, `mdb_add p1 239.1.1.1`).
    log: Vec<String>,
    /// The next this many deauthorizations fail.
    fail_deauthorize: u32,
    /// Usage counters by (port, group), when the fake has them (reads are logged then:
    /// `usage p1 239.1.1.1`); none: the kernel has no usage table.
    usage: Option<BTreeMap<(String, IpAddr), (u64, u64)>>,
}

#[derive(Clone, Default)]
struct FakeKernel(Arc<Mutex<KernelState>>);

impl FakeKernel {
    fn with<R>(&self, f: impl FnOnce(&mut KernelState) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }

    fn log(&self) -> Vec<String> {
        self.with(|k| k.log.clone())
    }
}

impl Dataplane for FakeKernel {
    fn setup_port(&mut self, _: &str, _: bool) -> Result<(), DpError> {
        Ok(())
    }

    fn set_mab_learning(&mut self, _: &str, _: bool) -> Result<(), DpError> {
        Ok(())
    }

    fn authorize(&mut self, at: &PortVlan, mac: MacAddr) -> Result<(), DpError> {
        self.with(|k| {
            k.log.push(format!("authorize {at} {mac}"));
            k.fdb.insert((at.clone(), mac));
        });
        Ok(())
    }

    fn deauthorize(&mut self, at: &PortVlan, mac: MacAddr) -> Result<(), DpError> {
        self.with(|k| {
            k.log.push(format!("deauthorize {at} {mac}"));
            if k.fail_deauthorize > 0 {
                k.fail_deauthorize -= 1;
                return Err(DpError::NoSuchPort(format!("{at} (injected)")));
            }
            k.fdb.remove(&(at.clone(), mac));
            Ok(())
        })
    }

    fn authorized_on(&mut self, ats: &[PortVlan]) -> Result<Vec<(PortVlan, MacAddr)>, DpError> {
        Ok(self.with(|k| k.fdb.iter().filter(|(at, _)| ats.contains(at)).cloned().collect()))
    }

    fn is_locked(&mut self, _: &str) -> Result<bool, DpError> {
        Ok(true)
    }

    fn move_untagged(&mut self, port: &str, from: u16, to: u16) -> Result<(), DpError> {
        self.with(|k| k.log.push(format!("move_untagged {port} {from} {to}")));
        Ok(())
    }

    fn teardown_ports(&mut self, _: &[PortVlan]) -> Result<(), DpError> {
        Ok(())
    }

    fn found(&mut self, _: &str, _: &[&str]) -> Result<Found, DpError> {
        Ok(Found::default())
    }

    fn restore(&mut self, _: &str, _: &Found) -> Result<(), DpError> {
        Ok(())
    }

    fn setup_multicast(&mut self, _: &str, _: &[&str], _: &[&str], _: u32, _: u32, _: u32) -> Result<(), DpError> {
        Ok(())
    }

    fn teardown_multicast(&mut self, _: &str, _: &[u16], _: &Found) -> Result<(), DpError> {
        Ok(())
    }

    fn mdb_add(&mut self, _: &str, at: &PortVlan, group: IpAddr, source: Option<IpAddr>) -> Result<(), DpError> {
        self.with(|k| {
            k.log.push(format!("mdb_add {at} {group}"));
            k.mdb.insert((at.clone(), group, source));
        });
        Ok(())
    }

    fn mdb_del(&mut self, _: &str, at: &PortVlan, group: IpAddr, source: Option<IpAddr>) -> Result<(), DpError> {
        self.with(|k| {
            k.log.push(format!("mdb_del {at} {group}"));
            k.mdb.remove(&(at.clone(), group, source));
        });
        Ok(())
    }

    fn mdb_all(&mut self, _: &str) -> Result<Vec<(MdbEntry, bool)>, DpError> {
        Ok(self.with(|k| k.mdb.iter().map(|e| (e.clone(), true)).collect()))
    }

    fn usage(&mut self, port: &str, group: IpAddr) -> Result<Option<(u64, u64)>, DpError> {
        Ok(self.with(|k| {
            let counters = k.usage.as_ref()?;
            let value = counters.get(&(port.to_string(), group)).copied().unwrap_or((0, 0));
            k.log.push(format!("usage {port} {group}"));
            Some(value)
        }))
    }
}

/// What the core sent.
#[derive(Debug, Clone, PartialEq)]
enum Sent {
    Frame(PortId, Vec<u8>),
    Uplink(usize, Vec<u8>),
    Radius(usize, Vec<u8>),
    Accounting(usize, Vec<u8>),
    Das(std::net::SocketAddr, Vec<u8>),
}

#[derive(Clone, Default)]
struct FakeNet(Arc<Mutex<Vec<Sent>>>);

impl FakeNet {
    fn take(&self) -> Vec<Sent> {
        std::mem::take(&mut self.0.lock().unwrap())
    }

    fn push(&self, s: Sent) -> std::io::Result<()> {
        self.0.lock().unwrap().push(s);
        Ok(())
    }
}

impl net::Net for FakeNet {
    fn send_frame(&mut self, port: PortId, frame: &[u8]) -> std::io::Result<()> {
        self.push(Sent::Frame(port, frame.to_vec()))
    }

    fn send_uplink(&mut self, uplink: usize, frame: &[u8]) -> std::io::Result<()> {
        self.push(Sent::Uplink(uplink, frame.to_vec()))
    }

    fn send_radius(&mut self, server: usize, datagram: &[u8]) -> std::io::Result<()> {
        self.push(Sent::Radius(server, datagram.to_vec()))
    }

    fn send_accounting(&mut self, server: usize, datagram: &[u8]) -> std::io::Result<()> {
        self.push(Sent::Accounting(server, datagram.to_vec()))
    }

    fn send_das(&mut self, to: std::net::SocketAddr, datagram: &[u8]) -> std::io::Result<()> {
        self.push(Sent::Das(to, datagram.to_vec()))
    }

    fn capture_drops(&mut self) -> u64 {
        0
    }

    fn links(&mut self) -> Result<Vec<netlink::Link>, netlink::Error> {
        Ok(vec![])
    }

    fn fdb(&mut self) -> Result<Vec<netlink::FdbEntry>, netlink::Error> {
        Ok(vec![])
    }
}

/// A switch with two MAB ports and the multicast gate (unknown groups allowed), its
/// database in a directory of the test's own.
struct Switch {
    dir: std::path::PathBuf,
    loaded: Loaded,
    kernel: FakeKernel,
    net: FakeNet,
    d: Daemon,
    epoch: Instant,
    now: Instant,
}

/// Two MAB ports.
const TWO_PORTS: &str = "[[port]]\nname = \"p1\"\nmode = \"mab\"\n[[port]]\nname = \"p2\"\nmode = \"mab\"\n";

impl Switch {
    fn new(name: &str) -> Self {
        Self::with(name, TWO_PORTS, "")
    }

    /// A switch with the `[[port]]`s of `ports`, and `multicast` added to its gate's
    /// section.
    fn with(name: &str, ports: &str, multicast: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mcgate-core-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("policies")).unwrap();
        std::fs::write(dir.join("secret"), SECRET).unwrap();
        std::fs::write(dir.join("policies/p.toml"), "[defaults]\nunknown = \"allow\"\n").unwrap();
        let text = format!(
            "[switch]\nbridge = \"br0\"\ndatabase = \"{d}/mcgate.redb\"\ncontrol_socket = \"{d}/c.sock\"\n\
             [radius]\n[[radius.server]]\naddress = \"127.0.0.1:1812\"\nsecret_file = \"secret\"\n\
             {ports}[multicast]\npolicies = \"policies\"\nuplinks = [\"up0\"]\n{multicast}",
            d = dir.display()
        );
        let loaded = config::parse("test.toml", &text, &dir).unwrap();
        let (kernel, net) = (FakeKernel::default(), FakeNet::default());
        let epoch = Instant::now();
        let d = Self::daemon(&loaded, &kernel, &net, epoch, Now { mono: 0, unix: 1_700_000_000 }, 1);
        Switch { dir, loaded, kernel, net, d, epoch, now: epoch }
    }

    fn daemon(loaded: &Loaded, kernel: &FakeKernel, net: &FakeNet, epoch: Instant, at: Now, run_id: u32) -> Daemon {
        Self::daemon_taped(loaded, kernel, net, epoch, at, run_id, None)
    }

    /// ... recorded to `record`, when given.
    fn daemon_taped(
        loaded: &Loaded,
        kernel: &FakeKernel,
        net: &FakeNet,
        epoch: Instant,
        at: Now,
        run_id: u32,
        record: Option<&std::path::Path>,
    ) -> Daemon {
        let cfg = &loaded.config;
        // with a tagged port entry the bridge filters by VLAN, every PVID 1
        let filtering = cfg.ports.iter().any(|p| p.vlan.is_some());
        let ports = (cfg.ports.iter())
            .map(|p| {
                let i = cfg.ports.iter().position(|q| q.name.get_ref() == p.name.get_ref()).unwrap_or(0);
                let tag = p.vlan.as_ref().map(|v| *v.get_ref());
                input::StartPort {
                    name: p.name.get_ref().clone(),
                    tag,
                    ifindex: i as u32 + 10,
                    mac: MacAddr([2, 0, 0, 0, 1, i as u8]),
                    running: true,
                    vlan: tag.or(filtering.then_some(1)),
                }
            })
            .collect();
        let start = Start {
            at,
            seed: [7; 32],
            run_id,
            kernel_state_gone: false,
            boot_id: "boot".into(),
            ports,
            bridge: Some(input::StartBridge {
                mac: MacAddr([2, 0, 0, 0, 1, 0xff]),
                v4: Some(Ipv4Addr::new(192, 0, 2, 1)),
                ll6: None,
                vlan_protocol: ethernet::ETHERTYPE_VLAN,
            }),
        };
        let rec = record.map(|path| tape::Recorder::create(path, &cfg.switch.database).unwrap());
        let store = Store::open(&cfg.switch.database).unwrap();
        let (mut dp, mut nt): (Box<dyn Dataplane + Send>, Box<dyn net::Net>) =
            (Box::new(kernel.clone()), Box::new(net.clone()));
        let mut tape = Tape::Off;
        if let Some(rec) = rec {
            dp = Box::new(tape::RecordDataplane { inner: dp, rec: rec.clone() });
            nt = Box::new(tape::RecordNet { inner: nt, rec: rec.clone() });
            tape = Tape::Record(rec);
        }
        let store = (Arc::new(store), Writer::default());
        Daemon::build(loaded, &start, epoch, dp, store, nt, tape, None, None, vec![]).unwrap()
    }

    fn at(&self) -> Now {
        Now {
            mono: input::mono(self.epoch, self.now),
            unix: 1_700_000_000 + self.now.duration_since(self.epoch).as_secs(),
        }
    }

    fn step(&mut self, inputs: Vec<Input>) -> Vec<Response> {
        let at = self.at();
        self.d.step(at, inputs)
    }

    fn later(&mut self, by: Duration) {
        self.now += by;
        self.step(vec![Input::Timeout]);
    }

    /// A host MAC bypass admits: the kernel reports it, RADIUS accepts it.
    fn mab_login(&mut self, port: PortId, mac: MacAddr) {
        self.mab_login_with(port, mac, &[]);
    }

    /// ... with `attrs` in the Access-Accept.
    fn mab_login_with(&mut self, port: PortId, mac: MacAddr, attrs: &[(u8, &[u8])]) {
        let (ifindex, vlan) = (self.d.ports[port].ifindex, self.d.ports[port].vlan);
        let f = netlink::FdbEntry { ifindex, mac, state: 0, master: Some(1), locked: true, vlan };
        self.step(vec![Input::Kernel { events: vec![netlink::Event::NewFdb(f)] }]);
        let request = self.net.take().into_iter().find_map(|s| match s {
            Sent::Radius(0, bytes) => Some(bytes),
            _ => None,
        });
        let request = request.expect("an Access-Request");
        self.step(vec![Input::Radius { acct: false, server: 0, datagram: accept_with(&request, attrs) }]);
    }

    /// The host's IGMPv3 report joining `group`.
    fn join(&mut self, port: PortId, mac: MacAddr, group: Ipv4Addr) {
        self.report(port, mac, OwnedRecord { record_type: RecordType::ToEx, group, sources: vec![] });
    }

    /// The host's IGMPv3 report with `record`.
    fn report(&mut self, port: PortId, mac: MacAddr, record: OwnedRecord<Ipv4Addr>) {
        let report = igmp::Repr::ReportV3 { records: &[record] };
        let payload = report.to_ipv4(Ipv4Addr::new(192, 0, 2, 11), igmp::ALL_V3_ROUTERS, 0xc0).unwrap();
        let read = input::mono(self.epoch, self.now);
        self.step(vec![Input::Mcast { port, src: mac, ethertype: ethernet::ETHERTYPE_IPV4, payload, read, waited: 0 }]);
    }

    fn kick(&mut self, port: &str, mac: MacAddr) {
        self.step(vec![Input::Control { request: Request::SessionKick { port: port.into(), mac: mac.to_string() } }]);
    }

    /// The result of the batch at a deferred writer: committed (`ok`) or failed.
    fn committed(&mut self, ok: bool) {
        let n = self.d.acct.records_at_writer().expect("a batch at the writer") as u64;
        let next = self.journal().last().map_or(1, |r| r.seq + 1);
        let result = if ok { Ok((next..next + n).collect()) } else { Err("injected: no space left on device".into()) };
        self.step(vec![Input::Committed { result, took: 500 }]);
    }

    fn authorized(&self) -> Vec<String> {
        self.kernel.log().into_iter().filter(|l| l.starts_with("authorize")).collect()
    }

    fn journal(&self) -> Vec<Record> {
        self.d.store.records(0, 1000).unwrap().into_iter().map(Result::unwrap).collect()
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An Access-Accept for `request` carrying `attrs`, signed as FreeRADIUS signs it.
fn accept_with(request: &[u8], attrs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut all = vec![(attr::MESSAGE_AUTHENTICATOR, &[0u8; 16][..])];
    all.extend_from_slice(attrs);
    let mut pkt = encode_raw(2, request[1], &[0; 16], &all).unwrap();
    sign_reply(&mut pkt, request[4..20].try_into().unwrap(), SECRET);
    pkt
}

fn g(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn a_session_is_granted_only_once_its_start_is_durable() {
    let mut s = Switch::new("grant");
    // the journal cannot commit: RADIUS accepts the host, the port stays shut to it
    s.d.store.fail_commits.store(true, Relaxed);
    s.mab_login(0, A);
    assert!(!s.kernel.log().iter().any(|l| l.starts_with("authorize")), "{:?}", s.kernel.log());
    assert!(s.d.store.sessions().unwrap().is_empty());
    assert!(!s.journal().iter().any(|r| r.kind == Kind::Session && r.status == Status::Start));
    // it commits again: the next host's Start is durable before its port opens
    s.d.store.fail_commits.store(false, Relaxed);
    s.later(Duration::from_secs(2));
    s.mab_login(1, B);
    let granted: Vec<String> = s.kernel.log().into_iter().filter(|l| l.starts_with("authorize")).collect();
    assert_eq!(granted, vec![format!("authorize p2 {B}")]);
    let started: Vec<_> =
        s.journal().into_iter().filter(|r| r.kind == Kind::Session && r.status == Status::Start).collect();
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0].mac, Some(B));
}

#[test]
fn the_core_goes_on_while_a_batch_commits_and_what_needs_it_waits_for_the_result() {
    let mut s = Switch::new("writer");
    s.mab_login(0, A);
    s.d.writer = Writer::Deferred;
    // A's first join: its entry goes in at once, its Start to the writer
    s.join(0, A, g("239.1.1.1"));
    assert!(s.kernel.log().contains(&"mdb_add p1 239.1.1.1".into()), "{:?}", s.kernel.log());
    assert_eq!(s.d.acct.records_at_writer(), Some(1));
    // while it commits: the next join is decided and goes in too, and B's login is
    // accepted, but B's port stays shut and nothing more goes to the writer
    s.join(0, A, g("239.1.1.2"));
    assert!(s.kernel.log().contains(&"mdb_add p1 239.1.1.2".into()), "{:?}", s.kernel.log());
    s.mab_login(1, B);
    assert_eq!(s.authorized(), [format!("authorize p1 {A}")]);
    assert_eq!(s.d.acct.records_at_writer(), Some(1));
    // the first batch is durable: the second goes (the join's Start and B's), B still shut
    s.committed(true);
    assert_eq!(s.d.acct.records_at_writer(), Some(2));
    assert_eq!(s.authorized(), [format!("authorize p1 {A}")]);
    // ... and once that is, B's port opens
    s.committed(true);
    assert_eq!(s.authorized(), [format!("authorize p1 {A}"), format!("authorize p2 {B}")]);
    assert!(!s.d.acct.committing());
    let starts = s.journal().into_iter().filter(|r| r.status == Status::Start).count();
    assert_eq!(starts, 4, "A, two joins, B: {:?}", s.journal());
}

#[test]
fn a_failed_commit_refuses_what_came_while_it_ran_too() {
    let mut s = Switch::new("writer-fails");
    s.mab_login(0, A);
    s.d.writer = Writer::Deferred;
    s.join(0, A, g("239.1.1.1"));
    s.join(0, A, g("239.1.1.2"));
    s.mab_login(1, B);
    let before = s.journal().len();
    // the first batch fails: its join and everything since that waits for it are
    // refused (both joins' entries out again, B's port never opened)
    s.committed(false);
    let log = s.kernel.log();
    assert!(log.contains(&"mdb_del p1 239.1.1.1".into()) && log.contains(&"mdb_del p1 239.1.1.2".into()), "{log:?}");
    assert!(s.kernel.with(|k| k.mdb.is_empty()));
    assert_eq!(s.authorized(), [format!("authorize p1 {A}")]);
    assert!(!s.d.sessions.contains_key(&(1, B)));
    // the retry, a second later, makes durable what remains: no Start of either join
    // or of B, and no Stop for what never started
    s.later(Duration::from_secs(2));
    assert_eq!(s.d.acct.records_at_writer(), Some(0), "{:?}", s.journal());
    s.committed(true);
    assert_eq!(s.journal().len(), before, "{:?}", s.journal());
    assert_eq!(s.authorized(), [format!("authorize p1 {A}")]);
    // and joins are admitted again
    s.join(0, A, g("239.1.1.1"));
    s.committed(true);
    assert_eq!(s.journal().len(), before + 1, "{:?}", s.journal());
}

#[test]
fn a_join_that_cannot_be_journaled_is_refused_and_its_entry_taken_back() {
    let mut s = Switch::new("join");
    s.mab_login(0, A);
    s.d.store.fail_commits.store(true, Relaxed);
    s.join(0, A, g("239.1.1.1"));
    // the entry went in with the commit, and out again when that failed
    let log = s.kernel.log();
    let tail: Vec<&str> = log.iter().map(String::as_str).skip_while(|l| !l.starts_with("mdb_add")).collect();
    assert_eq!(tail, ["mdb_add p1 239.1.1.1", "mdb_del p1 239.1.1.1"], "{log:?}");
    assert!(s.kernel.with(|k| k.mdb.is_empty()));
    assert!(s.d.mcast.as_ref().unwrap().tracker.memberships().all(|m| m.group != IpAddr::V4(g("239.1.1.1"))));
    assert!(!s.journal().iter().any(|r| r.kind == Kind::Membership), "{:?}", s.journal());
    s.d.store.fail_commits.store(false, Relaxed);
    s.later(Duration::from_secs(2));
    s.join(0, A, g("239.1.1.1"));
    assert!(s.kernel.log().contains(&"mdb_add p1 239.1.1.1".to_string()), "{:?}", s.kernel.log());
    let starts = s.journal().into_iter().filter(|r| r.kind == Kind::Membership && r.status == Status::Start).count();
    assert_eq!(starts, 1);
}

/// A group's usage counter stands still while no entry of the interface forwards the
/// group: it is read when the last one goes, and the next join there takes that value as
/// its base instead of reading on its way to the first packet; not while a
/// source-specific entry of another host still forwards the group.
#[test]
fn a_groups_counter_is_read_when_its_last_entry_goes_not_at_the_next_join() {
    let mut s = Switch::new("frozen");
    let group = g("239.1.1.1");
    let key = ("p1".to_string(), IpAddr::V4(group));
    s.kernel.with(|k| k.usage = Some(BTreeMap::new()));
    let reads = |s: &Switch| s.kernel.log().iter().filter(|l| *l == "usage p1 239.1.1.1").count();
    let base = |s: &Switch, mac| {
        let ch = (IpAddr::V4(group), None);
        s.d.mcast.as_ref().unwrap().tracker.membership(0, mac, ch).and_then(|m| m.usage_base)
    };
    let leave = |s: &mut Switch, mac| {
        s.report(0, mac, OwnedRecord { record_type: RecordType::ToIn, group, sources: vec![] });
        // past the group-specific query's wait: the entry goes
        s.later(Duration::from_secs(3));
    };
    s.mab_login(0, A);
    s.join(0, A, group);
    assert_eq!(reads(&s), 1, "nothing frozen yet: the join reads");
    s.kernel.with(|k| k.usage.as_mut().unwrap().insert(key.clone(), (10, 1400)));
    leave(&mut s, A);
    assert!(s.kernel.log().contains(&"mdb_del p1 239.1.1.1".to_string()), "{:?}", s.kernel.log());
    assert_eq!(reads(&s), 3, "the Stop's read, then the frozen value's after the entry went");
    s.join(0, A, group);
    assert_eq!(reads(&s), 3, "the join took the frozen value");
    assert_eq!(base(&s, A), Some((10, 1400)));

    // B on the same port holds a source-specific channel of the group: A's leave leaves
    // the counter moving, and A's next join reads it
    s.mab_login(0, B);
    let source = Ipv4Addr::new(192, 0, 2, 50);
    s.report(0, B, OwnedRecord { record_type: RecordType::Allow, group, sources: vec![source] });
    assert!(s.d.mcast.as_ref().unwrap().tracker.holds(0, (IpAddr::V4(group), Some(IpAddr::V4(source)))));
    leave(&mut s, A);
    let after_leave = reads(&s);
    s.kernel.with(|k| k.usage.as_mut().unwrap().insert(key.clone(), (30, 4200)));
    s.join(0, A, group);
    assert_eq!(reads(&s), after_leave + 1, "read at the join");
    assert_eq!(base(&s, A), Some((30, 4200)));
}

#[test]
fn a_sessions_end_stops_its_memberships_with_the_sessions_cause() {
    let mut s = Switch::new("end");
    s.mab_login(0, A);
    s.join(0, A, g("239.1.1.1"));
    s.kick("p1", A);
    let log = s.kernel.log();
    assert!(
        log.contains(&"mdb_del p1 239.1.1.1".to_string()) && log.contains(&format!("deauthorize p1 {A}")),
        "{log:?}"
    );
    let stops: Vec<Record> = s.journal().into_iter().filter(|r| r.status == Status::Stop).collect();
    assert_eq!(stops.len(), 2, "{stops:?}");
    for r in &stops {
        assert_eq!(r.terminate_cause, Some(TerminateCause::AdminReset), "{r:?}");
    }
}

#[test]
fn a_failed_kernel_change_is_made_again_a_second_later() {
    let mut s = Switch::new("retry");
    s.mab_login(0, A);
    s.kernel.with(|k| k.fail_deauthorize = 1);
    s.kick("p1", A);
    assert!(s.kernel.with(|k| k.fdb.contains(&(at("p1"), A))), "the first delete was to fail");
    let due = s.d.reconcile_due(s.now).unwrap();
    assert!(due <= s.now + Duration::from_secs(1), "the reconciliation was not brought forward");
    s.later(Duration::from_secs(1));
    assert!(s.kernel.with(|k| k.fdb.is_empty()), "{:?}", s.kernel.log());
    assert_eq!(s.d.kernel.stats.fdb_removed, 1);
}

#[test]
fn a_restart_reconciles_the_kernel_both_ways() {
    let mut s = Switch::new("restart");
    s.mab_login(0, A);
    s.join(0, A, g("239.1.1.1"));
    // while mcgate is down, A's FDB and MDB entries go and a stranger's appear; and one
    // for A that mcgate installed while its Start was being committed when it died
    // (the record never became durable: nothing justifies the entry)
    s.kernel.with(|k| {
        k.fdb.clear();
        k.fdb.insert((at("p1"), STRANGER));
        k.mdb.clear();
        k.mdb.insert((at("p2"), IpAddr::V4(g("239.9.9.9")), None));
        k.mdb.insert((at("p1"), IpAddr::V4(g("239.1.1.2")), None));
        k.log.clear();
    });
    // mcgate stops (its database closed) and starts again on the same database
    s.d.store.close();
    s.d = Switch::daemon(&s.loaded, &s.kernel, &s.net, s.epoch, s.at(), 2);
    let (fdb, mdb) = s.kernel.with(|k| (k.fdb.clone(), k.mdb.clone()));
    assert_eq!(fdb, BTreeSet::from([(at("p1"), A)]), "{:?}", s.kernel.log());
    assert_eq!(mdb, BTreeSet::from([(at("p1"), IpAddr::V4(g("239.1.1.1")), None)]), "{:?}", s.kernel.log());
    // continued, not restarted: no new Start for either, and no record at all yet
    let starts = s.journal().into_iter().filter(|r| r.status == Status::Start).count();
    assert_eq!(starts, 2);
    let interims = |s: &Switch| s.journal().into_iter().filter(|r| r.status == Status::InterimUpdate).count();
    assert_eq!(interims(&s), 0, "a restart is no reason for an Interim-Update");
    // their Interim-Updates go on: one each within the (default, 600 s) interval
    for _ in 0..60 {
        s.later(Duration::from_secs(10));
    }
    assert_eq!(interims(&s), 2, "{:?}", s.journal());
}

#[test]
fn interim_updates_due_within_a_second_are_journaled_together() {
    let mut s = Switch::new("gather");
    // the session's first Interim-Update is due at 600 s (the membership, joined at 0.5 s,
    // has its with the session's)
    s.mab_login(0, A);
    s.later(Duration::from_millis(500));
    s.join(0, A, g("239.1.1.1"));
    assert_eq!(s.d.acct.interims_queued(), 1, "one timer: the session's, which its membership's goes with");
    let interims = |s: &Switch| s.journal().into_iter().filter(|r| r.status == Status::InterimUpdate).count();
    // the host keeps reporting (its membership would time out otherwise)
    for _ in 0..5 {
        s.later(Duration::from_secs(100));
        s.join(0, A, g("239.1.1.1"));
    }
    s.later(Duration::from_millis(99_600));
    assert_eq!(interims(&s), 0, "at 600.1 s the first has not waited its second");
    s.later(Duration::from_millis(900));
    assert_eq!(interims(&s), 2, "at 601 s both, in one step and one commit: {:?}", s.journal());
}

#[test]
fn an_untagged_and_a_tagged_host_on_one_port_are_each_their_own_session() {
    // p1's untagged hosts (its PVID, 1 here) and those tagged in VLAN 20, both MAB, their
    // streams in multicast VLAN 100
    let ports = "[[port]]\nname = \"p1\"\nmode = \"mab\"\n[[port]]\nname = \"p1\"\nvlan = 20\nmode = \"mab\"\n";
    let mut s = Switch::with("tagged", ports, "vlan = 100\n");
    s.mab_login(0, A);
    s.mab_login(1, B);
    let fdb = s.kernel.with(|k| k.fdb.clone());
    assert_eq!(fdb, BTreeSet::from([(at("p1:1"), A), (at("p1:20"), B)]), "{:?}", s.kernel.log());
    let vlans: BTreeSet<_> = s.d.store.sessions().unwrap().into_iter().map(|r| r.unwrap().vlan).collect();
    assert_eq!(vlans, BTreeSet::from([Some(1), Some(20)]));
    // one channel joined from both VLANs: one entry, in the multicast VLAN
    s.join(0, A, g("239.1.1.1"));
    s.join(1, B, g("239.1.1.1"));
    let mdb = s.kernel.with(|k| k.mdb.clone());
    assert_eq!(mdb, BTreeSet::from([(at("p1:100"), IpAddr::V4(g("239.1.1.1")), None)]));
    let held: BTreeSet<_> = s.d.mcast.as_ref().unwrap().tracker.memberships().map(|m| (m.mac, m.vlan)).collect();
    assert_eq!(held, BTreeSet::from([(A, Some(1)), (B, Some(20))]));

    // a restart finds each host in its own entry again, and removes nothing
    s.d.store.close();
    s.kernel.with(|k| k.log.clear());
    s.d = Switch::daemon(&s.loaded, &s.kernel, &s.net, s.epoch, s.at(), 2);
    assert!(s.d.sessions.contains_key(&(0, A)) && s.d.sessions.contains_key(&(1, B)), "{:?}", s.d.sessions.keys());
    assert_eq!(s.kernel.with(|k| (k.fdb.clone(), k.mdb.clone())), (fdb, mdb), "{:?}", s.kernel.log());
    assert!(!s.kernel.log().iter().any(|l| l.contains("del")), "{:?}", s.kernel.log());

    // A's session ends: the entry stays for B; B's ends too: it goes
    s.kick("p1:1", A);
    let (fdb, mdb) = s.kernel.with(|k| (k.fdb.clone(), k.mdb.clone()));
    assert_eq!(fdb, BTreeSet::from([(at("p1:20"), B)]));
    assert_eq!(mdb.len(), 1, "B's channel went with A's session: {:?}", s.kernel.log());
    s.kick("p1:20", B);
    assert!(s.kernel.with(|k| k.mdb.is_empty() && k.fdb.is_empty()), "{:?}", s.kernel.log());
    // each record says where its host was: the VLAN, and the interface's NAS-Port (its
    // index, 10 here), which its VLAN entries share
    let stops: BTreeSet<_> = (s.journal().into_iter())
        .filter(|r| r.kind == Kind::Session && r.status == Status::Stop)
        .map(|r| (r.mac, r.vlan, r.nas_port))
        .collect();
    assert_eq!(stops, BTreeSet::from([(Some(A), Some(1), Some(10)), (Some(B), Some(20), Some(10))]));
}

#[test]
fn a_port_with_its_own_multicast_vlan_gets_its_streams_there_and_asks_for_them_there() {
    // p1's streams come in VLAN 200, p2's in the switch's multicast VLAN 100
    let ports =
        "[[port]]\nname = \"p1\"\nmode = \"mab\"\nmulticast_vlan = 200\n[[port]]\nname = \"p2\"\nmode = \"mab\"\n";
    let mut s = Switch::with("mvr-port", ports, "vlan = 100\n");
    s.mab_login(0, A);
    s.mab_login(1, B);
    s.net.take();
    s.join(0, A, g("239.1.1.1"));
    s.join(1, B, g("239.1.1.1"));
    let mdb = s.kernel.with(|k| k.mdb.clone());
    let ch = IpAddr::V4(g("239.1.1.1"));
    assert_eq!(mdb, BTreeSet::from([(at("p1:200"), ch, None), (at("p2:100"), ch, None)]));
    // the first join in each multicast VLAN goes upstream tagged in it
    let tags: Vec<u16> = (s.net.take().into_iter())
        .filter_map(|o| match o {
            Sent::Uplink(0, f) if f[12..14] == [0x81, 0x00] => Some(u16::from_be_bytes([f[14], f[15]]) & 0x0fff),
            Sent::Uplink(0, f) => panic!("an untagged report upstream: {f:02x?}"),
            _ => None,
        })
        .collect();
    assert_eq!(tags, vec![200, 100]);
}

/// RFC 3580's Tunnel attributes assigning VLAN `vid` (tag 1, as FreeRADIUS writes `:1`).
fn tunnel(vid: &str) -> [(u8, Vec<u8>); 3] {
    [
        (attr::TUNNEL_TYPE, vec![1, 0, 0, 13]),
        (attr::TUNNEL_MEDIUM_TYPE, vec![1, 0, 0, 6]),
        (attr::TUNNEL_PRIVATE_GROUP_ID, [&[1u8][..], vid.as_bytes()].concat()),
    ]
}

#[test]
fn a_radius_assigned_vlan_moves_the_port_and_its_end_moves_it_back() {
    // p1's untagged hosts (PVID 1 here: a tagged listing makes the fake bridge filter)
    let ports = "[[port]]\nname = \"p1\"\nmode = \"mab\"\n[[port]]\nname = \"p2\"\nvlan = 30\nmode = \"mab\"\n";
    let mut s = Switch::with("assigned", ports, "");
    let vlan40 = tunnel("40");
    let refs: Vec<(u8, &[u8])> = vlan40.iter().map(|(t, v)| (*t, v.as_slice())).collect();
    s.mab_login_with(0, A, &refs);
    assert!(s.kernel.log().contains(&"move_untagged p1 1 40".to_string()), "{:?}", s.kernel.log());
    assert_eq!(s.kernel.with(|k| k.fdb.clone()), BTreeSet::from([(at("p1:40"), A)]));
    assert_eq!(s.d.sessions[&(0, A)].vlan, Some(40));
    assert_eq!(s.d.store.port_homes().unwrap(), std::collections::BTreeMap::from([("p1".to_string(), 1)]));
    // the port's hosts share its VLAN: another assigned elsewhere, or to none, is refused
    let vlan50 = tunnel("50");
    let refs50: Vec<(u8, &[u8])> = vlan50.iter().map(|(t, v)| (*t, v.as_slice())).collect();
    s.mab_login_with(0, B, &refs50);
    s.later(Duration::from_secs(5));
    s.mab_login(0, STRANGER);
    assert_eq!(s.d.io.vlan_refused, 2);
    assert_eq!(s.kernel.with(|k| k.fdb.clone()), BTreeSet::from([(at("p1:40"), A)]), "{:?}", s.kernel.log());
    // one the bridge cannot place (a VLAN by name) is a Reject
    let named = tunnel("video");
    let refs_named: Vec<(u8, &[u8])> = named.iter().map(|(t, v)| (*t, v.as_slice())).collect();
    s.mab_login_with(1, B, &refs_named);
    assert_eq!(s.d.io.vlan_refused, 3);
    assert!(s.d.sessions.len() == 1, "{:?}", s.d.sessions.keys());
    // the last host gone, the port is back in its own VLAN, and nothing is kept of it
    s.kick("p1:40", A);
    assert!(s.kernel.log().contains(&"move_untagged p1 40 1".to_string()), "{:?}", s.kernel.log());
    assert!(s.d.store.port_homes().unwrap().is_empty());
    assert_eq!(s.d.ports[0].vlan, Some(1));
    let stop = s.journal().into_iter().find(|r| r.kind == Kind::Session && r.status == Status::Stop).unwrap();
    assert_eq!((stop.vlan, stop.mac), (Some(40), Some(A)), "{stop:?}");
}

/// The outputs of a recording, as recorded.
fn recorded_outputs(path: &std::path::Path) -> Vec<tape::Output> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines = text.lines().map(|l| serde_json::from_str::<tape::Line>(l).unwrap());
    lines.filter_map(|l| if let tape::Line::Output(o) = l { Some(o) } else { None }).collect()
}

#[test]
fn a_recording_replays_to_the_same_outputs_failures_included() {
    let mut s = Switch::new("record");
    // a session and a membership in the store before the recorded run
    s.mab_login(0, A);
    s.join(0, A, g("239.1.1.1"));
    s.d.store.close();
    let file = s.dir.join("run.jsonl");
    s.d = Switch::daemon_taped(&s.loaded, &s.kernel, &s.net, s.epoch, s.at(), 2, Some(&file));
    // a commit that fails (B's session is refused), a kernel change that fails, and
    // what works: the recording has the failures with the rest
    s.d.store.fail_commits.store(true, Relaxed);
    s.mab_login(1, B);
    s.d.store.fail_commits.store(false, Relaxed);
    s.later(Duration::from_secs(2));
    s.join(0, A, g("239.1.1.2"));
    s.kernel.with(|k| k.fail_deauthorize = 1);
    s.kick("p1", A);
    s.later(Duration::from_secs(1));
    s.d.store.close();

    let recorded = recorded_outputs(&file);
    let failed = |o: &tape::Output| serde_json::to_value(o).unwrap()["error"].is_string();
    // a commit's result is a step's input
    let text = std::fs::read_to_string(&file).unwrap();
    let commits: Vec<Input> = (text.lines().map(|l| serde_json::from_str::<tape::Line>(l).unwrap()))
        .filter_map(|l| if let tape::Line::Step { inputs, .. } = l { Some(inputs) } else { None })
        .flatten()
        .filter(|i| matches!(i, Input::Committed { .. }))
        .collect();
    assert!(commits.iter().any(|i| matches!(i, Input::Committed { result: Err(_), .. })), "{commits:?}");
    assert!(commits.iter().any(|i| matches!(i, Input::Committed { result: Ok(_), .. })), "{commits:?}");
    assert!(recorded.iter().any(|o| matches!(o, tape::Output::Deauthorize { .. }) && failed(o)), "{recorded:?}");
    let mut made = vec![];
    let scratch = s.dir.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let done = replay(&s.loaded, &file, &scratch, |o| made.push(o.clone())).unwrap();
    assert_eq!(done.diverged, None);
    assert_eq!(made, recorded);
    assert_eq!(done.outputs, recorded.len());

    // the same recording with one input changed does not replay
    let text = std::fs::read_to_string(&file).unwrap();
    let changed = text.replacen("\"timeout\"", "\"kernel_overrun\"", 1);
    assert_ne!(changed, text);
    let other = s.dir.join("changed.jsonl");
    std::fs::write(&other, changed).unwrap();
    std::fs::copy(tape::store_copy(&file), tape::store_copy(&other)).unwrap();
    let done = replay(&s.loaded, &other, &scratch, |_| {}).unwrap();
    assert!(done.diverged.is_some());
}

#[test]
fn a_run_recorded_against_the_real_peers_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/replay");
    let loaded = config::load(&dir.join("mcgate.toml")).unwrap();
    let scratch = std::env::temp_dir().join(format!("mcgate-replay-test-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut made = vec![];
    let done = replay(&loaded, &dir.join("run.jsonl"), &scratch, |o| made.push(o.clone()));
    let _ = std::fs::remove_dir_all(&scratch);
    let done = done.unwrap();
    assert_eq!(done.diverged, None);
    let recorded = recorded_outputs(&dir.join("run.jsonl"));
    assert_eq!(made, recorded);
    // bob's login through FreeRADIUS, his join, alice's logoff
    assert!(made.iter().any(|o| matches!(o, tape::Output::Authorize { port, .. } if port.to_string() == "p2")));
    assert!(made.iter().any(|o| matches!(o, tape::Output::MdbAdd { group, .. } if group.to_string() == "239.1.1.2")));
    assert!(made.iter().any(|o| matches!(o, tape::Output::Deauthorize { port, .. } if port.to_string() == "p1")));
}

/// A standby takes over mid-login from a process that died: the Access-Request it had
/// sent is sent again 50 ms later, as it was (the dead process may have read the answer),
/// not after the 2 s timeout; the server's answer to it finishes the login.
#[test]
fn a_standby_asks_again_soon_what_the_process_that_died_was_waiting_for() {
    let mut s = Switch::new("died");
    let (ifindex, vlan) = (s.d.ports[0].ifindex, s.d.ports[0].vlan);
    let f = netlink::FdbEntry { ifindex, mac: B, state: 0, master: Some(1), locked: true, vlan };
    s.step(vec![Input::Kernel { events: vec![netlink::Event::NewFdb(f)] }]);
    let radius = |sent: Vec<Sent>| -> Vec<Vec<u8>> {
        (sent.into_iter()).filter_map(|x| if let Sent::Radius(0, b) = x { Some(b) } else { None }).collect()
    };
    let request = radius(s.net.take()).pop().expect("B's Access-Request");
    // the standby's state: what the store does not hold
    let bytes = serde_json::to_vec(&s.d.snapshot(vec![], true)).unwrap();
    s.d.store.close();
    s.d = Switch::daemon(&s.loaded, &s.kernel, &s.net, s.epoch, s.at(), 2);
    s.d.take_over(serde_json::from_slice(&bytes).unwrap(), true);
    s.later(Duration::from_millis(40));
    assert_eq!(radius(s.net.take()), Vec::<Vec<u8>>::new(), "not yet");
    s.later(Duration::from_millis(10));
    assert_eq!(radius(s.net.take()), vec![request.clone()], "sent again as it was");
    s.step(vec![Input::Radius { acct: false, server: 0, datagram: accept_with(&request, &[]) }]);
    assert!(s.kernel.log().contains(&format!("authorize p1 {B}")), "{:?}", s.kernel.log());
}

/// A hand-over mid-login: the Access-Request is out when the old process hands over;
/// the new one gets the server's answer on the same socket and finishes the login with
/// nothing asked twice, and the session's accounting goes on from the journal.
#[test]
fn a_login_under_way_finishes_in_the_process_that_took_over() {
    let mut s = Switch::new("handover");
    s.mab_login(0, A);
    // B's Access-Request goes out; then a new process takes over
    let (ifindex, vlan) = (s.d.ports[0].ifindex, s.d.ports[0].vlan);
    let f = netlink::FdbEntry { ifindex, mac: B, state: 0, master: Some(1), locked: true, vlan };
    s.step(vec![Input::Kernel { events: vec![netlink::Event::NewFdb(f)] }]);
    let request = s.net.take().into_iter().find_map(|x| match x {
        Sent::Radius(0, bytes) => Some(bytes),
        _ => None,
    });
    let request = request.expect("B's Access-Request");
    let package = s.d.snapshot(vec![], false);
    let bytes = serde_json::to_vec(&package).unwrap();
    if let Some(path) = std::env::var_os("MCGATE_HANDOVER_FIXTURE") {
        std::fs::write(path, &bytes).unwrap();
    }
    let package: handover::Package = serde_json::from_slice(&bytes).unwrap();
    s.d.store.close();
    s.kernel.with(|k| k.log.clear());
    let cfg = &s.loaded.config;
    assert!(cfg.ports.len() == 2);
    s.d = {
        let mut d = Switch::daemon(&s.loaded, &s.kernel, &s.net, s.epoch, s.at(), 2);
        // as run() does it: the package goes into the build; here into a built core,
        // whose restored state it replaces
        d.take_over(package, false);
        d
    };
    let asked_again = s.net.take().into_iter().filter(|x| matches!(x, Sent::Radius(0, _))).count();
    assert_eq!(asked_again, 0, "nothing is asked again");
    // the server's answer to the old process's request reaches the new one
    s.step(vec![Input::Radius { acct: false, server: 0, datagram: accept_with(&request, &[]) }]);
    assert!(s.kernel.log().contains(&format!("authorize p1 {B}")), "{:?}", s.kernel.log());
    let starts: Vec<_> = s.journal().into_iter().filter(|r| r.status == Status::Start).map(|r| r.session_id).collect();
    assert_eq!(starts.len(), 2, "A's Start once (before), B's now: {starts:?}");
    // A's session went on (no Stop)
    assert!(s.journal().iter().all(|r| r.status != Status::Stop), "{:?}", s.journal());
}
