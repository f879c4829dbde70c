//! The daemon's core without root: a recording fake of the kernel (FDB and MDB as sets,
//! every change logged), a recording fake of the sockets, a real store in a temporary
//! directory that can be made to fail, and RADIUS answers signed as a server would. What
//! the namespace tests show against the real peers, shown here on the rules themselves.

use super::*;
use crate::acct::{Kind, Record, Status, TerminateCause};
use crate::dataplane::netlink;
use crate::dataplane::{Error as DpError, Found, MdbEntry};
use crate::radius::{attr, encode_raw, sign_reply};
use crate::wire::records::{OwnedRecord, RecordType};
use crate::wire::{igmp, ip};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

const SECRET: &[u8] = b"testing123";
const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x11]);
const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x12]);
const STRANGER: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x99]);

/// The kernel as the fake keeps it.
#[derive(Default)]
struct KernelState {
    fdb: BTreeSet<(String, MacAddr)>,
    mdb: BTreeSet<MdbEntry>,
    /// Every change asked for, in order (`authorize p1 02:..`, `mdb_add p1 239.1.1.1`).
    log: Vec<String>,
    /// The next this many deauthorizations fail.
    fail_deauthorize: u32,
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
    fn setup_port(&mut self, _: &str, _: crate::auth::PortMode) -> Result<(), DpError> {
        Ok(())
    }

    fn set_mab_learning(&mut self, _: &str, _: bool) -> Result<(), DpError> {
        Ok(())
    }

    fn authorize(&mut self, port: &str, mac: MacAddr) -> Result<(), DpError> {
        self.with(|k| {
            k.log.push(format!("authorize {port} {mac}"));
            k.fdb.insert((port.into(), mac));
        });
        Ok(())
    }

    fn deauthorize(&mut self, port: &str, mac: MacAddr) -> Result<(), DpError> {
        self.with(|k| {
            k.log.push(format!("deauthorize {port} {mac}"));
            if k.fail_deauthorize > 0 {
                k.fail_deauthorize -= 1;
                return Err(DpError::NoSuchPort(format!("{port} (injected)")));
            }
            k.fdb.remove(&(port.into(), mac));
            Ok(())
        })
    }

    fn authorized_on(&mut self, ports: &[&str]) -> Result<Vec<(String, MacAddr)>, DpError> {
        Ok(self.with(|k| k.fdb.iter().filter(|(p, _)| ports.contains(&p.as_str())).cloned().collect()))
    }

    fn is_locked(&mut self, _: &str) -> Result<bool, DpError> {
        Ok(true)
    }

    fn teardown_port(&mut self, _: &str) -> Result<(), DpError> {
        Ok(())
    }

    fn found(&mut self, _: &str, _: &[&str]) -> Result<Found, DpError> {
        Ok(Found::default())
    }

    fn restore(&mut self, _: &str, _: &Found) -> Result<(), DpError> {
        Ok(())
    }

    fn setup_multicast(&mut self, _: &str, _: &[&str], _: &[&str], _: u32) -> Result<(), DpError> {
        Ok(())
    }

    fn teardown_multicast(&mut self, _: &str) -> Result<(), DpError> {
        Ok(())
    }

    fn mdb_add(&mut self, _: &str, port: &str, group: IpAddr, source: Option<IpAddr>) -> Result<(), DpError> {
        self.with(|k| {
            k.log.push(format!("mdb_add {port} {group}"));
            k.mdb.insert((port.into(), group, source));
        });
        Ok(())
    }

    fn mdb_del(&mut self, _: &str, port: &str, group: IpAddr, source: Option<IpAddr>) -> Result<(), DpError> {
        self.with(|k| {
            k.log.push(format!("mdb_del {port} {group}"));
            k.mdb.remove(&(port.into(), group, source));
        });
        Ok(())
    }

    fn mdb_all(&mut self, _: &str) -> Result<Vec<(MdbEntry, bool)>, DpError> {
        Ok(self.with(|k| k.mdb.iter().map(|e| (e.clone(), true)).collect()))
    }

    fn usage(&mut self, _: &str, _: IpAddr) -> Result<Option<(u64, u64)>, DpError> {
        Ok(None)
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
    now: Instant,
}

impl Switch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mcgate-core-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("policies")).unwrap();
        std::fs::write(dir.join("secret"), SECRET).unwrap();
        std::fs::write(dir.join("policies/p.toml"), "[defaults]\nunknown = \"allow\"\n").unwrap();
        let text = format!(
            "[switch]\nbridge = \"br0\"\ndatabase = \"{d}/mcgate.redb\"\ncontrol_socket = \"{d}/c.sock\"\n\
             [radius]\n[[radius.server]]\naddress = \"127.0.0.1:1812\"\nsecret_file = \"secret\"\n\
             [[port]]\nname = \"p1\"\nmode = \"mab\"\n[[port]]\nname = \"p2\"\nmode = \"mab\"\n\
             [multicast]\npolicies = \"policies\"\nuplinks = [\"up0\"]\n",
            d = dir.display()
        );
        let loaded = config::parse("test.toml", &text, &dir).unwrap();
        let (kernel, net) = (FakeKernel::default(), FakeNet::default());
        let d = Self::daemon(&loaded, &kernel, &net);
        let mut s = Switch { dir, loaded, kernel, net, d, now: Instant::now() };
        s.d.start(s.now, false, 1);
        s.settle();
        s
    }

    fn daemon(loaded: &Loaded, kernel: &FakeKernel, net: &FakeNet) -> Daemon {
        let cfg = &loaded.config;
        let ports = (cfg.ports.iter().enumerate())
            .map(|(i, p)| Port {
                name: p.name.get_ref().clone(),
                ifindex: i as u32 + 10,
                mac: MacAddr([2, 0, 0, 0, 1, i as u8]),
                limits: Default::default(),
                mab_learning: true,
            })
            .collect();
        let (mc, policy) = (cfg.multicast.as_ref().unwrap(), loaded.policy.as_ref().unwrap());
        let bridge_mac = MacAddr([2, 0, 0, 0, 1, 0xff]);
        let v4 = Some(Ipv4Addr::new(192, 0, 2, 1));
        let mcast = mcast::McastState::new(cfg, mc, policy, &["p1", "p2"], bridge_mac, v4, None, 1);
        let store = Store::open(&cfg.switch.database).unwrap();
        Daemon::new(loaded, ports, Box::new(kernel.clone()), store, Box::new(net.clone()), Some(mcast), None).unwrap()
    }

    /// Carries out everything pending, as the event loop does after each event.
    fn settle(&mut self) {
        self.d.drain(self.now);
    }

    fn later(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        self.d.radius.handle_timeout(now);
        self.d.auth.handle_timeout(now);
        if let Some(m) = self.d.mcast.as_mut() {
            m.tracker.handle_timeout(now);
        }
        self.d.acct_timeout(now);
        self.d.reconcile_timeout(now);
        self.settle();
    }

    /// A host MAC bypass admits: the kernel reports it, RADIUS accepts it.
    fn mab_login(&mut self, port: PortId, mac: MacAddr) {
        let ifindex = self.d.ports[port].ifindex;
        let f = netlink::FdbEntry { ifindex, mac, state: 0, master: Some(1), locked: true };
        self.d.kernel_event(self.now, netlink::Event::NewFdb(f));
        self.settle();
        let request = self.net.take().into_iter().find_map(|s| match s {
            Sent::Radius(0, bytes) => Some(bytes),
            _ => None,
        });
        let request = request.expect("an Access-Request");
        self.d.handle_event(self.now, Event::Radius { acct: false, server: 0, bytes: accept(&request) });
        self.settle();
    }

    /// The host's IGMPv3 report joining `group`.
    fn join(&mut self, port: PortId, mac: MacAddr, group: Ipv4Addr) {
        let record = OwnedRecord { record_type: RecordType::ToEx, group, sources: vec![] };
        let payload = ip::emit_ipv4(
            Ipv4Addr::new(192, 0, 2, 11),
            igmp::ALL_V3_ROUTERS,
            ip::PROTO_IGMP,
            0xc0,
            &igmp::emit_report_v3(&[record]),
        );
        let ev = Event::Mcast { port, src: mac, ethertype: ethernet::ETHERTYPE_IPV4, payload, at: self.now };
        self.d.handle_event(self.now, ev);
        self.settle();
    }

    fn kick(&mut self, port: &str, mac: MacAddr) {
        self.d.control(Request::SessionKick { port: port.into(), mac: mac.to_string() });
        self.settle();
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

/// An Access-Accept for `request`, signed as FreeRADIUS signs it.
fn accept(request: &[u8]) -> Vec<u8> {
    let mut pkt = encode_raw(2, request[1], &[0; 16], &[(attr::MESSAGE_AUTHENTICATOR, &[0; 16])]).unwrap();
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
    s.d.store.fail_commits = true;
    s.mab_login(0, A);
    assert!(!s.kernel.log().iter().any(|l| l.starts_with("authorize")), "{:?}", s.kernel.log());
    assert!(s.d.store.sessions().unwrap().is_empty());
    assert!(!s.journal().iter().any(|r| r.kind == Kind::Session && r.status == Status::Start));
    // it commits again: the next host's Start is durable before its port opens
    s.d.store.fail_commits = false;
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
fn a_join_that_cannot_be_journaled_is_refused_and_installs_nothing() {
    let mut s = Switch::new("join");
    s.mab_login(0, A);
    s.d.store.fail_commits = true;
    s.join(0, A, g("239.1.1.1"));
    assert!(!s.kernel.log().iter().any(|l| l.starts_with("mdb_add p1 239.1.1.1")), "{:?}", s.kernel.log());
    assert!(s.d.mcast.as_ref().unwrap().tracker.memberships().all(|m| m.group != IpAddr::V4(g("239.1.1.1"))));
    s.d.store.fail_commits = false;
    s.later(Duration::from_secs(2));
    s.join(0, A, g("239.1.1.1"));
    assert!(s.kernel.log().contains(&"mdb_add p1 239.1.1.1".to_string()), "{:?}", s.kernel.log());
    let starts = s.journal().into_iter().filter(|r| r.kind == Kind::Membership && r.status == Status::Start).count();
    assert_eq!(starts, 1);
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
    assert!(s.kernel.with(|k| k.fdb.contains(&("p1".into(), A))), "the first delete was to fail");
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
    // while mcgate is down, A's FDB and MDB entries go and a stranger's appear
    s.kernel.with(|k| {
        k.fdb.clear();
        k.fdb.insert(("p1".into(), STRANGER));
        k.mdb.clear();
        k.mdb.insert(("p2".into(), IpAddr::V4(g("239.9.9.9")), None));
        k.log.clear();
    });
    // mcgate stops (its database closed) and starts again on the same database
    s.d.store.close();
    s.d = Switch::daemon(&s.loaded, &s.kernel, &s.net);
    s.d.start(s.now, false, 2);
    s.settle();
    let (fdb, mdb) = s.kernel.with(|k| (k.fdb.clone(), k.mdb.clone()));
    assert_eq!(fdb, BTreeSet::from([("p1".to_string(), A)]), "{:?}", s.kernel.log());
    assert_eq!(mdb, BTreeSet::from([("p1".to_string(), IpAddr::V4(g("239.1.1.1")), None)]), "{:?}", s.kernel.log());
    // continued, not restarted: no new Start for either
    let starts = s.journal().into_iter().filter(|r| r.status == Status::Start).count();
    assert_eq!(starts, 2);
}
