//! The daemon as a process: the kernel and socket set-up, the reader tasks (a capture
//! task per access port, one per RADIUS socket) and the event loop that feeds the core
//! and sleeps until its next timer.

use super::fdstore;
use super::writer::Writer;
use super::*;

/// What the reader tasks hand the event loop.
pub(super) enum Event {
    Input(Input),
    /// A CLI request, and where its response goes.
    Control(Request, oneshot::Sender<Response>),
    /// A Prometheus scrape: the metrics as text.
    Metrics(oneshot::Sender<String>),
    /// A new process asks to take over (the newest format it reads), and where the
    /// hand-over (or why not) goes.
    HandOver(Formats, HandOverReply),
    /// A hot standby asks to follow (the formats it reads): the sockets and the first
    /// state, and where each new state goes.
    Standby(Formats, StandbyReply),
}

/// The hand-over formats a new process or a standby reads.
pub(super) type Formats = std::ops::RangeInclusive<u32>;
/// Where a hand-over goes, or why not.
pub(super) type HandOverReply = oneshot::Sender<Result<handover::Outgoing, String>>;
/// Where a standby's sockets and first state go, with its updates, or why not.
pub(super) type StandbyReply = oneshot::Sender<Result<(handover::Outgoing, Updates), String>>;

/// The states a standby gets, the latest only.
pub(super) type Updates = tokio::sync::watch::Receiver<Arc<Vec<u8>>>;

/// The reader tasks, stopped for a hand-over: those that await between reading and
/// handing on (capture, RADIUS) finish their batch when told; the others are aborted at
/// their next read (cancel-safe: nothing taken is lost).
struct Readers {
    stop: tokio::sync::watch::Sender<bool>,
    /// The capture tasks, by interface, which give back their flood limiters.
    captures: Vec<(u32, tokio::task::JoinHandle<limit::PortLimiter>)>,
    graceful: Vec<tokio::task::JoinHandle<()>>,
    abortable: Vec<tokio::task::JoinHandle<()>>,
}

impl Readers {
    /// Stops them all; the capture tasks' flood limiters, by interface.
    async fn stop(self) -> Vec<(u32, limit::Snapshot)> {
        for h in &self.abortable {
            h.abort();
        }
        let _ = self.stop.send(true);
        let mut limiters = Vec::new();
        for (ifindex, h) in self.captures {
            if let Ok(l) = h.await {
                limiters.push((ifindex, l.snapshot()));
            }
        }
        for h in self.graceful.into_iter().chain(self.abortable) {
            let _ = h.await;
        }
        limiters
    }
}

/// The sockets a hand-over passes on, kept as set up (another descriptor of each; the
/// capture sockets' ring positions are read when the readers have stopped).
#[derive(Default)]
struct Handing {
    captures: Vec<(u32, usize, Arc<PortSocket>)>,
    others: Vec<(handover::Fd, std::os::fd::OwnedFd)>,
}

impl Handing {
    fn keep(&mut self, kind: handover::Fd, fd: &impl std::os::fd::AsFd) -> anyhow::Result<()> {
        self.others.push((kind, fd.as_fd().try_clone_to_owned()?));
        Ok(())
    }

    /// Each socket and what it is (a capture socket's ring with the slot its reader
    /// reads next, as of now).
    fn each(&self) -> Vec<(handover::Fd, std::os::fd::BorrowedFd<'_>)> {
        let captures = self.captures.iter().map(|(ifindex, frames, socket)| {
            (handover::Fd::Capture { ifindex: *ifindex, frames: *frames, head: socket.head() }, socket.fd())
        });
        captures.chain(self.others.iter().map(|(kind, fd)| (kind.clone(), std::os::fd::AsFd::as_fd(fd)))).collect()
    }

    /// Another descriptor of each socket, and what it is (the rings' read positions:
    /// [`Handing::read_heads`] once the readers stopped).
    fn dup(&self) -> std::io::Result<(Vec<handover::Fd>, Vec<std::os::fd::OwnedFd>)> {
        self.each().into_iter().map(|(kind, fd)| Ok((kind, fd.try_clone_to_owned()?))).collect()
    }

    /// The capture rings' read positions into `kinds` (as [`Handing::dup`] made them).
    fn read_heads(&self, kinds: &mut [handover::Fd]) {
        for (kind, (_, _, socket)) in kinds.iter_mut().zip(&self.captures) {
            if let handover::Fd::Capture { head, .. } = kind {
                *head = socket.head();
            }
        }
    }

    /// Answers a standby's request: the sockets and the first state, and where each new
    /// state goes (`follower`); or why not. Nothing of it stops this process.
    fn follow_me(
        &self,
        d: &Daemon,
        follower: &mut Option<tokio::sync::watch::Sender<Arc<Vec<u8>>>>,
        formats: Formats,
        reply: StandbyReply,
    ) {
        let answer = if let Some(message) = handover::unreadable(&formats, "the standby") {
            Err(message)
        } else if follower.as_ref().is_some_and(|f| f.receiver_count() > 0) {
            Err("a standby follows already".to_string())
        } else {
            self.dup().map_err(|e| format!("cannot pass the sockets on: {e}")).map(|(kinds, fds)| {
                let bytes = serde_json::to_vec(&d.snapshot(kinds, true)).unwrap_or_default();
                let (updates, followed) = tokio::sync::watch::channel(Arc::new(Vec::new()));
                *follower = Some(updates);
                (handover::Outgoing { bytes, fds, version: handover::VERSION, done: None }, followed)
            })
        };
        if let Err(message) = &answer {
            warn!("standby refused: {message}");
        }
        if reply.send(answer).is_err() {
            *follower = None;
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT. Kernel state (locked ports, authorized
/// MACs) stays in place on exit: while mcgate is down nothing new gets in and what
/// was admitted keeps working.
///
/// With `standby`: follows the running daemon as its hot standby (see `handover`) and runs
/// once it is gone.
pub async fn run(loaded: Loaded, standby: bool) -> anyhow::Result<()> {
    let cfg = &loaded.config;
    let began = Instant::now();
    let stage = |what: &str| debug!(ms = began.elapsed().as_millis() as u64, "set-up: {what}");
    // Under systemd the process before may have left its sockets (and at a stop its
    // state) in the service manager's descriptor store (see `fdstore`); it is gone then.
    let in_store = cfg.debug.record.is_none() && !standby && fdstore::on();
    let fdstore::Stored { taken: mut stored, marks } = if in_store { fdstore::take()? } else { Default::default() };
    let (mut marks, marks_found) = if in_store { fdstore::Marks::open(marks) } else { (None, vec![]) };
    // A standby that took over from the process before (it died) has the store open and
    // answers on the listener systemd keeps too: it hands over as any running mcgate.
    // Otherwise the store opens now: the process before is gone.
    let mut opened = None;
    if stored.is_some() {
        match Store::open(&cfg.switch.database) {
            Ok(s) => opened = Some(s),
            Err(crate::store::Error::InUse) => {
                info!("the store is open in another process (a standby took over): it is asked to hand over");
                stored = None;
            }
            Err(e) => return Err(e).with_context(|| format!("opening database {}", cfg.switch.database.display())),
        }
    }
    // A running mcgate hands its sockets and state over (a recording starts afresh). It
    // is asked once this process's own set-up is done: the sockets go unread only while
    // the state passes and the store opens.
    let running = match cfg.debug.record {
        None if stored.is_some() => None,
        None => handover::connect(&cfg.switch.control_socket)?,
        Some(_) if standby => return Err(anyhow!("a standby does not record ([debug] record)")),
        Some(_) => None,
    };
    if standby && running.is_none() {
        return Err(anyhow!("--standby: no mcgate runs on {} to follow", cfg.switch.control_socket.display()));
    }
    let mut handing = Handing::default();
    // before the set-up locks the ports: a MAB port reports each new MAC once, and a
    // report made before anyone listened is not made again
    let subscribed = kernel::subscribe().context("subscribing to kernel events")?;
    let mut nl = Netlink::open()?;
    let links = nl.links()?;
    let bridge = links
        .iter()
        .find(|l| l.name == cfg.switch.bridge)
        .ok_or_else(|| anyhow!("bridge {} not found", cfg.switch.bridge))?;
    let (tx, mut rx) = mpsc::channel::<Event>(4096);
    // CoA/Disconnect requests wait in a queue of their own (see das::spawn_reader)
    let (das_tx, das_rx) = mpsc::channel::<Input>(das::QUEUE);

    let mut ports = Vec::new();
    for p in &cfg.ports {
        let name = p.name.get_ref().clone();
        let link = links.iter().find(|l| l.name == name).ok_or_else(|| anyhow!("port {name} not found"))?;
        if link.master != Some(bridge.index) {
            return Err(anyhow!("port {name} is not a member of bridge {}", cfg.switch.bridge));
        }
        let mac = link.mac.ok_or_else(|| anyhow!("port {name} has no MAC address"))?;
        let tag = p.vlan.as_ref().map(|v| *v.get_ref());
        ports.push(input::StartPort { name, tag, ifindex: link.index, mac, running: link.running, vlan: tag });
    }

    // capture runs before the set-up locks the ports (an EAPOL-Start then is not lost);
    // taking over, the running process's sockets come once it is set up
    let port_sockets = match running {
        None => Some(capture_sockets(cfg, &ports, &mut stored, &mut handing)?),
        Some(_) => None,
    };
    stage("capture sockets open");
    let mut dataplane: Box<dyn Dataplane + Send> =
        if cfg.switch.audit { Box::new(dataplane::Audit) } else { Box::new(dataplane::linux::LinuxBridge::new()?) };
    // an unlocked port: what an earlier run left in the kernel is gone (reboot, rebuilt bridge)
    let mut unlocked: Vec<String> =
        ports.iter().filter(|p| !dataplane.is_locked(&p.name).unwrap_or(false)).map(|p| p.name.clone()).collect();
    // each port once (a port listed for tagged hosts too is one interface)
    unlocked.sort();
    unlocked.dedup();
    let kernel_state_gone = !unlocked.is_empty();
    let seen = read_found(dataplane.as_mut(), cfg).context("reading the kernel state before set-up")?;
    // a host's own 802.1Q tag on a Q-in-Q bridge is payload to it: the frames would go
    // into the port's PVID, not the listing's VLAN
    if ports.iter().any(|p| p.tag.is_some()) && dataplane.vlan_protocol(&cfg.switch.bridge)? != ethernet::ETHERTYPE_VLAN
    {
        return Err(anyhow!("tagged hosts ([[port]] vlan) need a bridge with vlan_protocol 802.1Q"));
    }
    for i in 0..ports.len() {
        let name = ports[i].name.clone();
        let first = ports.iter().position(|q| q.name == name) == Some(i);
        if first {
            // the kernel's lock, learning and MAB are the interface's: MAB is on where
            // one of its entries uses it
            let mab = cfg.ports.iter().filter(|c| *c.name.get_ref() == name).any(|c| c.mode.uses_mab());
            dataplane.setup_port(&name, mab).with_context(|| format!("locking port {name}"))?;
        }
        let pvid = dataplane.port_vlan(&name).with_context(|| format!("reading the VLAN of port {name}"))?;
        let p = &mut ports[i];
        match (p.tag, pvid) {
            (None, _) => p.vlan = pvid,
            (Some(tag), None) => {
                return Err(anyhow!("port {name} VLAN {tag}: tagged hosts need a bridge with vlan_filtering 1"))
            }
            (Some(tag), Some(pvid)) if tag == pvid => {
                return Err(anyhow!(
                    "port {name} VLAN {tag}: it is the port's PVID, where its untagged hosts are; list the port without `vlan`"
                ))
            }
            (Some(_), Some(_)) => {}
        }
    }
    stage("ports locked");
    let seed: [u8; 32] = rand::random();
    let (bridge_addrs, uplinks) = match &cfg.multicast {
        Some(mc) if loaded.policy.is_some() => {
            let access: Vec<(&str, Option<u16>)> =
                ports.iter().enumerate().map(|(i, p)| (p.name.as_str(), loaded.multicast_vlan(i))).collect();
            let (b, uplinks) = mcast::set_up(cfg, mc, &access, &links, bridge, &mut nl, dataplane.as_mut())?;
            (Some(b), uplinks)
        }
        _ => (None, vec![]),
    };

    stage("multicast set up");
    let mut taken = match running {
        Some(asking) if standby => {
            let socket = cfg.switch.control_socket.clone();
            Some(tokio::task::spawn_blocking(move || handover::follow(&socket, asking)).await??)
        }
        Some(asking) => asking.request()?,
        None => stored,
    };
    // a recording starts with a copy of the database as this run finds it
    let recorder =
        (cfg.debug.record.as_ref()).map(|path| tape::Recorder::create(path, &cfg.switch.database)).transpose()?;
    let store = match opened {
        Some(s) => s,
        None => open_store(&cfg.switch.database, taken.as_ref().is_some_and(|t| !t.heads_known()))?,
    };
    stage("store open");
    remember_found(&store, seen, cfg, &unlocked).context("storing the kernel state found before set-up")?;
    // a handed-over event socket holds what the old process did not read; this one's
    // events since the set-up, the old process read
    let events = match taken.as_mut().and_then(|t| t.take(|f| *f == handover::Fd::Kernel)) {
        Some((_, fd)) => fd,
        None => subscribed,
    };
    handing.keep(handover::Fd::Kernel, &events)?;
    let port_sockets = match port_sockets {
        Some(opened) => opened,
        None => capture_sockets(cfg, &ports, &mut taken, &mut handing)?,
    };

    let mut uplink_sockets = Vec::new();
    for ifindex in uplinks {
        let socket = match taken.as_mut().and_then(|t| t.take(|f| *f == handover::Fd::Uplink { ifindex })) {
            Some((_, fd)) => PortSocket::adopt_tx_only(fd)?,
            None => PortSocket::open_tx_only(ifindex)?,
        };
        handing.keep(handover::Fd::Uplink { ifindex }, &socket.fd())?;
        uplink_sockets.push(Arc::new(socket));
    }
    let servers = loaded.radius_servers();
    let source = loaded.radius_source();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut readers = Readers { stop, captures: vec![], graceful: vec![], abortable: vec![] };
    let radius_sockets =
        udp_sockets(false, &servers, source, &tx, &mut taken, &mut handing, &stopped, &mut readers.graceful)?;
    let acct_sockets = udp_sockets(
        true,
        &loaded.acct_servers(),
        source,
        &tx,
        &mut taken,
        &mut handing,
        &stopped,
        &mut readers.graceful,
    )?;
    let mut das_socket = None;
    let mut das_reader = None;
    if let Some(da) = &cfg.dynamic_authorization {
        let listen = da.listen;
        let sock = match taken.as_mut().and_then(|t| t.take(|f| *f == handover::Fd::Das { listen })) {
            Some((_, fd)) => std::net::UdpSocket::from(fd),
            None => std::net::UdpSocket::bind(da.listen)
                .with_context(|| format!("dynamic authorization socket {}", da.listen))?,
        };
        sock.set_nonblocking(true)?;
        handing.keep(handover::Fd::Das { listen }, &sock)?;
        let addresses: Vec<_> = da.clients.iter().map(|c| c.get_ref().address).collect();
        let reader = Arc::new(das::ReaderStats::default());
        readers.abortable.push(das::spawn_reader(
            crate::sys::async_fd(sock.try_clone()?)?,
            addresses,
            das_tx,
            reader.clone(),
        ));
        info!(listen = %da.listen, "dynamic authorization (RFC 5176) on");
        das_socket = Some(sock);
        das_reader = Some(reader);
    }
    let mut net: Box<dyn net::Net> = Box::new(net::Sockets {
        ports: port_sockets.clone(),
        uplinks: uplink_sockets,
        radius: radius_sockets,
        accounting: acct_sockets,
        das: das_socket,
        nl,
    });
    let epoch = Instant::now();
    let start = Start {
        at: input::now(epoch),
        seed,
        run_id: rand::random(),
        kernel_state_gone,
        boot_id: sessions::boot_id(),
        ports,
        bridge: bridge_addrs,
    };
    let tape = match recorder {
        Some(rec) => {
            info!(file = %cfg.debug.record.as_ref().map_or(String::new(), |p| p.display().to_string()), "recording every input and output");
            net = Box::new(tape::RecordNet { inner: net, rec: rec.clone() });
            dataplane = Box::new(tape::RecordDataplane { inner: dataplane, rec: rec.clone() });
            Tape::Record(rec)
        }
        None => Tape::Off,
    };
    let died = taken.as_ref().is_some_and(handover::Taken::died);
    let mut handed = taken.as_mut().and_then(|t| t.package.take()).map(|p| (p, died));
    // the flood limiters go to the capture tasks, by interface
    let mut limiters = handed.as_mut().map(|(p, _)| std::mem::take(&mut p.limiters)).unwrap_or_default();
    // the journal's commits go on a thread of their own; their results come back here
    let store = Arc::new(store);
    let (committed_tx, committed_rx) = mpsc::unbounded_channel();
    let writer = Writer::thread(store.clone(), committed_tx).context("starting the journal writer")?;
    let store = (store, writer);
    let mut d = Daemon::build(&loaded, &start, epoch, dataplane, store, net, tape, das_reader, handed, marks_found)?;
    if kernel_state_gone {
        info!(ports = ?unlocked, "ports were not locked: nothing of an earlier run continues");
    }
    for (i, (p, socket)) in d.ports.iter().zip(port_sockets).enumerate().filter(|(i, (p, _))| p.interface == *i) {
        // the interface's entries, by the VLAN tag their hosts' frames carry
        let entries = d.ports.iter().enumerate().filter(|(_, q)| q.interface == i).map(|(j, q)| (q.tag, j)).collect();
        let limiter = match limiters.iter().position(|(ifindex, _)| *ifindex == p.ifindex) {
            Some(i) => limit::PortLimiter::resume(loaded.limits(), limiters.swap_remove(i).1),
            None => limit::PortLimiter::new(loaded.limits(), Instant::now()),
        };
        let capture = spawn_capture(entries, p, socket, limiter, epoch, tx.clone(), stopped.clone());
        readers.captures.push((p.ifindex, capture));
    }
    let (kernel_tx, kernel_rx) = mpsc::channel(kernel::QUEUE);
    readers.abortable.push(kernel::spawn_reader(events, d.ports.iter().map(|p| p.ifindex).collect(), kernel_tx)?);
    let mut queues = Queues { das: das_rx, kernel: kernel_rx, committed: committed_rx };
    if let Some(m) = &cfg.metrics {
        let listen = m.listen;
        let listener = match taken.as_mut().and_then(|t| t.take(|f| *f == handover::Fd::Metrics { listen })) {
            Some((_, fd)) => {
                let l = std::net::TcpListener::from(fd);
                l.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(l)?
            }
            None => metrics::bind(listen).await.with_context(|| format!("metrics on {listen}"))?,
        };
        handing.keep(handover::Fd::Metrics { listen }, &listener)?;
        readers.abortable.push(metrics::serve(listener, tx.clone()));
    }
    let group = loaded.control_gid;
    let listener = match taken.as_mut().and_then(|t| t.take(|f| *f == handover::Fd::Control)) {
        Some((_, fd)) => {
            let l = std::os::unix::net::UnixListener::from(fd);
            l.set_nonblocking(true)?;
            tokio::net::UnixListener::from_std(l)?
        }
        None => control::bind(&cfg.switch.control_socket, group)?,
    };
    handing.keep(handover::Fd::Control, &listener)?;
    readers.abortable.push(control::serve(listener, tx.clone(), group));
    // everything is in place: the old process may go
    if let Some(t) = taken.take() {
        t.confirm();
    }
    if in_store {
        fdstore::keep(&handing.each());
    }
    // the etcd catalogue: the one applied last (kept in the store) until etcd answers
    let (catalogue_tx, mut catalogue_rx) = mpsc::channel(4);
    if let (Some(c), Some(state)) = (&cfg.catalogue, d.catalogue.as_ref()) {
        let applied = state.applied.subscribe();
        let stored = d.store.catalogue().unwrap_or_else(|e| {
            warn!("the stored catalogue is unreadable, the policy files decide until etcd answers: {e}");
            None
        });
        if let Some(snap) = &stored {
            info!(revision = snap.revision, "catalogue: deciding with the one applied last until etcd answers");
            let update = crate::catalogue::Update { catalogue: Ok(snap.clone()), resync: false };
            d.step(input::now(epoch), vec![Input::Catalogue { update }]);
        }
        crate::catalogue::spawn(c.clone(), cfg.switch.nas_identifier.clone(), stored, catalogue_tx, applied);
    }
    let set_up_ms = began.elapsed().as_millis() as u64;
    info!(ports = d.ports.len(), sessions = d.sessions.len(), set_up_ms, "mcgate running");
    let mut notifier = notify::Notifier::from_env();
    notifier.ready(&d.summary());
    // the watchdog's pings come from this loop: a step that never ends stops them
    let mut tick = tokio::time::interval(notifier.every().unwrap_or(Duration::from_secs(3600)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    // a step: what is waiting (up to BATCH_EVENTS) handled at one time, one commit
    let mut next = Gathered::default();
    // One timer for the whole run, moved only when the core's next deadline moves: a timer
    // made anew (or moved earlier) on every step has tokio wake its own driver with a
    // write to its eventfd and an extra epoll round, about 14 times per PEAP login.
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    // the hot standby following this process
    let mut follower: Option<tokio::sync::watch::Sender<Arc<Vec<u8>>>> = None;
    loop {
        let deadline = d.poll_timeout();
        if let Some(at) = deadline.filter(|at| armed != Some(*at)) {
            sleep.as_mut().reset(at.into());
            armed = Some(at);
        }
        let (mut stop, mut signalled) = (false, false);
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                let mut ev = Some(ev);
                // what else is waiting goes into the same commit (group commit)
                for _ in 0..BATCH_EVENTS {
                    let Some(e) = ev.take().or_else(|| rx.try_recv().ok()) else { break };
                    next.add(&mut d, e);
                }
            }
            Some(i) = queues.das.recv() => next.inputs.push(i),
            Some(msg) = queues.kernel.recv() => next.inputs.push(msg),
            Some(done) = queues.committed.recv() => next.inputs.push(done),
            Some(update) = catalogue_rx.recv() => next.inputs.push(Input::Catalogue { update }),
            _ = &mut sleep, if deadline.is_some() => {
                next.inputs.push(Input::Timeout);
                armed = None;
            }
            _ = tick.tick(), if notifier.every().is_some() => notifier.tick(&d.summary()),
            _ = sighup.recv() => {
                next.inputs.push(Input::Control { request: Request::PolicyReload });
                signalled = true;
            }
            _ = sigterm.recv() => { info!("SIGTERM: stopping; kernel state left in place"); stop = true }
            _ = sigint.recv() => { info!("SIGINT: stopping; kernel state left in place"); stop = true }
        }
        // what a standby follows changes with everything but joins and leaves (and the
        // journal's commits: they make durable what it was told)
        let follows = |i: &Input| !matches!(i, Input::Mcast { .. } | Input::Committed { .. });
        let changed = follower.is_some() && next.inputs.iter().any(follows);
        let responses = d.step(input::now(epoch), std::mem::take(&mut next.inputs));
        if let Some(m) = marks.as_mut() {
            m.write(d.acct.unstored_marks());
        }
        if let Some(f) = follower.as_ref() {
            if f.receiver_count() == 0 {
                follower = None;
            } else if changed {
                let state = handover::Follow::State(Box::new(d.snapshot(vec![], true)));
                f.send_replace(Arc::new(serde_json::to_vec(&state).unwrap_or_default()));
            }
        }
        // control responses come in the order of their requests; SIGHUP's has no caller
        let mut responses = responses.into_iter();
        for reply in next.replies.drain(..) {
            if let Some(r) = responses.next() {
                let _ = reply.send(r);
            }
        }
        if signalled {
            match responses.next() {
                Some(Response::Done { message }) => {
                    info!("SIGHUP: {message}");
                    notifier.status(&format!("{}; {message}", d.summary()));
                }
                Some(Response::Error { message }) => {
                    error!("SIGHUP: {message}");
                    notifier.status(&format!("{}; reload refused: {message}", d.summary()));
                }
                _ => {}
            }
        }
        if stop {
            notifier.stopping();
            if in_store {
                // systemd may start the next process on these sockets: what they read
                // is handled, and the state goes to the store with the read positions
                settle(&mut d, &mut queues.committed, epoch).await;
                let limiters = last_step(&mut d, readers, &mut rx, &mut queues, &mut next, epoch).await;
                let package = d.last_package(handing.each().into_iter().map(|(kind, _)| kind).collect(), limiters);
                if let Some(m) = marks.as_mut() {
                    m.write(d.acct.unstored_marks());
                }
                match fdstore::leave(&package) {
                    Ok(()) => info!("the state is in systemd's descriptor store with the sockets"),
                    Err(e) => warn!("leaving the state to systemd: {e:#}; a next process starts without it"),
                }
                // a standby follows the next process systemd starts (the listener is in
                // the store: its connection waits there), or finds none after a stop
                if let Some(f) = follower.take() {
                    moving(f).await;
                }
                // the control socket's file stays: its listener is in the store
                return Ok(());
            }
            settle(&mut d, &mut queues.committed, epoch).await;
            d.commit_delivery_marks();
            // the capture sockets close together once nothing else holds them (the
            // readers, the core), not one by one as the process goes (see `close_many`)
            readers.stop().await;
            drop(d);
            let captures = handing.captures.into_iter().filter_map(|(_, _, s)| Arc::into_inner(s)).collect();
            PortSocket::close_many(captures);
            break;
        }
        if let Some((formats, reply)) = next.standby.take() {
            handing.follow_me(&d, &mut follower, formats, reply);
        }
        if let Some((formats, reply)) = next.hand_over.take() {
            if let Some(message) = handover::unreadable(&formats, "the new one") {
                let message = format!("{message}: stop this one first");
                warn!("hand-over refused: {message}");
                let _ = reply.send(Err(message));
                continue;
            }
            let (mut kinds, fds) = match handing.dup() {
                Ok(dup) => dup,
                Err(e) => {
                    let message = format!("cannot pass the sockets on: {e}");
                    warn!("hand-over refused: {message}");
                    let _ = reply.send(Err(message));
                    continue;
                }
            };
            // the batch at the writer first, while the readers still read (what they read
            // waits for the last step): the sockets then go unread for one commit, the
            // last step's, not for two in a row
            settle(&mut d, &mut queues.committed, epoch).await;
            info!("a new process takes over: stopping the readers");
            notifier.status("handing over to a new process");
            let limiters = last_step(&mut d, readers, &mut rx, &mut queues, &mut next, epoch).await;
            // the standby follows the new process
            if let Some(f) = follower.take() {
                f.send_replace(moving_line());
            }
            handing.read_heads(&mut kinds);
            let package = d.last_package(kinds, limiters);
            return hand_over(d, handing, package, fds, reply).await;
        }
    }
    let _ = std::fs::remove_file(&cfg.switch.control_socket);
    Ok(())
}

fn moving_line() -> Arc<Vec<u8>> {
    Arc::new(serde_json::to_vec(&handover::Follow::Moving).unwrap_or_default())
}

/// Tells the standby to follow the next process, and waits (a second at most) until it
/// has gone to do so: this process is about to exit.
async fn moving(follower: tokio::sync::watch::Sender<Arc<Vec<u8>>>) {
    follower.send_replace(moving_line());
    if tokio::time::timeout(Duration::from_secs(1), follower.closed()).await.is_err() {
        warn!("the standby did not take the word to follow the next process within a second");
    }
}

/// Opens the store; `after_death`: a standby taking over from a process that died, whose
/// connection closed while it exited, before the kernel released its hold on the
/// database (the benchmark's second take-over found it held): tried again for up to 10 s.
fn open_store(path: &std::path::Path, after_death: bool) -> anyhow::Result<Store> {
    let t0 = Instant::now();
    loop {
        match Store::open(path) {
            Err(crate::store::Error::InUse) if after_death && t0.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(1));
            }
            r => {
                if after_death {
                    debug!(waited_us = t0.elapsed().as_micros() as u64, "the store was released");
                }
                return r.with_context(|| format!("opening database {}", path.display()));
            }
        }
    }
}

/// Stops the readers and handles what they had read in a last step, committed (a
/// hand-over's, and a stop's that leaves its state to systemd). A hand-over or standby
/// request that came meanwhile is refused. Returns the capture tasks' flood limiters.
async fn last_step(
    d: &mut Daemon,
    readers: Readers,
    rx: &mut mpsc::Receiver<Event>,
    queues: &mut Queues,
    next: &mut Gathered,
    epoch: Instant,
) -> Vec<(u32, limit::Snapshot)> {
    let stopping = readers.stop();
    tokio::pin!(stopping);
    let limiters = loop {
        tokio::select! {
            limiters = &mut stopping => break limiters,
            Some(ev) = rx.recv() => next.add(d, ev),
        }
    };
    while let Ok(ev) = rx.try_recv() {
        next.add(d, ev);
    }
    if let Some((_, reply)) = next.hand_over.take() {
        let _ = reply.send(Err("this process is going: ask the next one".into()));
    }
    if let Some((_, reply)) = next.standby.take() {
        let _ = reply.send(Err("this process is going: follow the next one".into()));
    }
    next.inputs.extend(std::iter::from_fn(|| queues.das.try_recv().ok()));
    next.inputs.extend(std::iter::from_fn(|| queues.kernel.try_recv().ok()));
    next.inputs.extend(std::iter::from_fn(|| queues.committed.try_recv().ok()));
    debug!(inputs = next.inputs.len(), "readers stopped");
    let responses = d.step(input::now(epoch), std::mem::take(&mut next.inputs));
    for (reply, r) in next.replies.drain(..).zip(responses) {
        let _ = reply.send(r);
    }
    settle(d, &mut queues.committed, epoch).await;
    debug!("last step committed");
    limiters
}

/// Waits for the journal writer to commit everything the core did (each result a step,
/// which may hand it the next batch), before the process goes or passes its state on.
/// A failed commit's retry is not waited for: what it holds goes as it would have.
async fn settle(d: &mut Daemon, committed_rx: &mut mpsc::UnboundedReceiver<Input>, epoch: Instant) {
    while d.acct.committing() {
        let Some(done) = committed_rx.recv().await else { break };
        d.step(input::now(epoch), vec![done]);
    }
}

/// The queues of inputs besides the readers' shared one: CoA/Disconnect requests (their
/// own, see `das::spawn_reader`), kernel events, the journal writer's results.
struct Queues {
    das: mpsc::Receiver<Input>,
    kernel: mpsc::Receiver<Input>,
    committed: mpsc::UnboundedReceiver<Input>,
}

/// What the next step takes: the inputs, where the answers of its control requests go
/// (in order), and a hand-over or standby request, handled after it.
#[derive(Default)]
struct Gathered {
    inputs: Vec<Input>,
    replies: Vec<oneshot::Sender<Response>>,
    hand_over: Option<(Formats, HandOverReply)>,
    standby: Option<(Formats, StandbyReply)>,
}

impl Gathered {
    /// An event for the step; a scrape is answered at once.
    fn add(&mut self, d: &mut Daemon, e: Event) {
        match e {
            Event::Input(i) => self.inputs.push(i),
            Event::Control(request, reply) => {
                self.inputs.push(Input::Control { request });
                self.replies.push(reply);
            }
            Event::Metrics(reply) => {
                d.read_kernel_counters();
                let _ = reply.send(d.metrics());
            }
            Event::HandOver(formats, reply) => self.hand_over = Some((formats, reply)),
            Event::Standby(formats, reply) => self.standby = Some((formats, reply)),
        }
    }
}

/// One capture socket per interface, shared by its entries (untagged, tagged): the one
/// handed over (`taken`), or a new one.
fn capture_sockets(
    cfg: &config::Config,
    ports: &[input::StartPort],
    taken: &mut Option<handover::Taken>,
    handing: &mut Handing,
) -> anyhow::Result<Vec<Arc<PortSocket>>> {
    let heads_known = taken.as_ref().is_none_or(handover::Taken::heads_known);
    let frames = cfg.limits.capture_ring_frames;
    // the capture socket of interface `i` among those handed over
    let capture_of =
        |i: u32| move |f: &handover::Fd| matches!(f, handover::Fd::Capture { ifindex, .. } if *ifindex == i);
    // the interfaces that need a socket of their own, opened together (see `open_many`)
    let mut fresh: Vec<u32> =
        (ports.iter()).map(|p| p.ifindex).filter(|i| !taken.as_ref().is_some_and(|t| t.has(capture_of(*i)))).collect();
    fresh.sort_unstable();
    fresh.dedup();
    let mut opened: std::collections::HashMap<u32, std::io::Result<PortSocket>> =
        fresh.iter().copied().zip(PortSocket::open_many(&fresh, frames)).collect();
    let mut port_sockets: Vec<Arc<PortSocket>> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let (name, ifindex) = (&p.name, p.ifindex);
        let shared = ports[..i].iter().position(|q| q.ifindex == ifindex).map(|j| port_sockets[j].clone());
        let handed = taken.as_mut().and_then(|t| t.take(capture_of(ifindex)));
        let socket = match (shared, handed) {
            (Some(s), _) => s,
            (None, Some((handover::Fd::Capture { frames, head, .. }, fd))) => {
                let s = Arc::new(
                    PortSocket::adopt(fd, frames, heads_known.then_some(head))
                        .with_context(|| format!("capture on {name}, handed over"))?,
                );
                handing.captures.push((ifindex, frames, s.clone()));
                s
            }
            (None, _) => {
                let opened = opened.remove(&ifindex).unwrap_or_else(|| PortSocket::open(ifindex, frames));
                let s = Arc::new(opened.with_context(|| format!("capture on {name}"))?);
                handing.captures.push((ifindex, frames, s.clone()));
                s
            }
        };
        port_sockets.push(socket);
    }
    Ok(port_sockets)
}

/// Passes the sockets (`fds`, described by `kinds`) and the core's state on to the
/// process that asked (`reply`), once the readers stopped and the last step committed;
/// the store closes before, for the new process to open. The control socket's file
/// stays: it is the new process's now. `_held`: this process's other descriptors of the
/// sockets, kept until it exits, so that the core's going closes none of them (closing
/// the last descriptor of an AF_PACKET socket waits for an RCU grace period, 11 ms here).
async fn hand_over(
    d: Daemon,
    _held: Handing,
    package: handover::Package,
    fds: Vec<std::os::fd::OwnedFd>,
    reply: HandOverReply,
) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec(&package)?;
    debug!("hand-over: state serialized");
    drop(d);
    debug!("hand-over: store closed");
    let (done, confirmed) = oneshot::channel();
    let out = handover::Outgoing { bytes, fds, version: handover::VERSION, done: Some(done) };
    let length = out.bytes.len();
    if reply.send(Ok(out)).is_err() {
        return Err(anyhow!(
            "hand-over: the new process went away before it got the sockets; stopping, kernel state left in place"
        ));
    }
    if confirmed.await.unwrap_or(false) {
        info!(state_octets = length, "handed over; exiting");
        Ok(())
    } else {
        Err(anyhow!("hand-over: the new process did not confirm; stopping, kernel state left in place"))
    }
}

/// The port's capture task: frames the kernel filter passed, through the port's flood
/// limiter (here, so that a flooding port's excess never reaches the shared queue), to
/// the actor as its entry's (`entries`: by the frames' VLAN tag, none for untagged).
fn spawn_capture(
    entries: Vec<(Option<u16>, PortId)>,
    p: &Port,
    socket: Arc<PortSocket>,
    limiter: limit::PortLimiter,
    epoch: Instant,
    tx: mpsc::Sender<Event>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<limit::PortLimiter> {
    let mut capture = Capture {
        entries,
        limiter,
        vlan_log: crate::rate::LogLimit::per_minute(256),
        stats: p.limits.clone(),
        name: p.name.clone(),
        epoch,
    };
    tokio::spawn(async move {
        let mut inputs = Vec::with_capacity(CAPTURE_BATCH);
        loop {
            // reading is cancel-safe: told to stop, the ring keeps what is not taken
            let read = tokio::select! {
                biased;
                _ = stop.changed() => return capture.limiter,
                r = socket.recv_batch(CAPTURE_BATCH, |frame, info| inputs.extend(capture.admit(frame, info))) => r,
            };
            if let Err(e) = read {
                error!(port = capture.name, "capture: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            for input in inputs.drain(..) {
                if tx.send(Event::Input(input)).await.is_err() {
                    return capture.limiter;
                }
            }
        }
    })
}

/// Frames a capture task takes from its ring at a time before it hands them on: the
/// other ports' tasks and the actor get their turn in between.
const CAPTURE_BATCH: usize = 64;

/// A capture task's state: the interface's entries (by the VLAN tag their hosts' frames
/// carry, none for untagged) and its flood limiter.
struct Capture {
    entries: Vec<(Option<u16>, PortId)>,
    limiter: limit::PortLimiter,
    vlan_log: crate::rate::LogLimit<MacAddr>,
    stats: Arc<limit::Stats>,
    name: String,
    epoch: Instant,
}

impl Capture {
    /// What becomes of one captured frame: nothing (sent by this host, malformed, in a
    /// VLAN without an entry, over its flood limit) or the input for its entry.
    fn admit(&mut self, bytes: &[u8], info: sys::PacketInfo) -> Option<Input> {
        if info.pkttype == sys::PACKET_OUTGOING {
            return None;
        }
        let frame = ethernet::Frame::new_checked(bytes).ok()?;
        let now = Instant::now();
        // The kernel takes a VLAN tag off before the tap (it comes in the ring's header):
        // a frame is its VLAN's entry's, and one of a VLAN without an entry (VID 0 too),
        // or with a tag that is not 802.1Q's (a service tag), is nothing mcgate may act on.
        let tag = match info.vlan {
            Some(vid) if info.tpid == ethernet::ETHERTYPE_VLAN => Some(Some(vid)),
            Some(_) => None,
            None => Some(None),
        };
        let listed = tag.and_then(|tag| self.entries.iter().find(|(t, _)| *t == tag));
        let Some(&(_, port)) = listed else {
            self.stats.dropped_vlan.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if self.vlan_log.allow(now, frame.src()) {
                warn!(port = self.name, mac = %frame.src(), vid = info.vlan, ethertype = format!("{:#06x}", frame.ethertype()), "frame in an unconfigured VLAN dropped (logged once a minute per host)");
            }
            return None;
        };
        let verdict = match frame.ethertype() {
            ethernet::ETHERTYPE_EAPOL => self.limiter.eapol(now, &self.stats),
            _ => {
                let was = self.stats.quarantined.load(std::sync::atomic::Ordering::Relaxed);
                let v = self.limiter.report(now, frame.src(), &self.stats);
                if v == limit::Verdict::QuarantineStarts {
                    let limits = self.limiter.config();
                    warn!(port = self.name, mac = %frame.src(), "port quarantined: IGMP/MLD over its rate for {:?}; new joins dropped for {:?}, admitted streams stay", limits.quarantine_after, limits.quarantine_time);
                } else if was && v == limit::Verdict::Pass {
                    info!(port = self.name, "port released from quarantine");
                }
                v
            }
        };
        if verdict != limit::Verdict::Pass {
            return None;
        }
        let (src, payload) = (frame.src(), frame.payload().to_vec());
        Some(match frame.ethertype() {
            ethernet::ETHERTYPE_EAPOL => Input::Eapol { port, src, pdu: payload },
            ethertype => {
                // (a clock stepped back in between counts as no wait)
                let waited = std::time::SystemTime::now().duration_since(info.received).unwrap_or_default();
                let waited = waited.as_micros().min(u32::MAX.into()) as u32;
                Input::Mcast { port, src, ethertype, payload, read: input::mono(self.epoch, now), waited }
            }
        })
    }
}

/// A UDP socket per server, connected (datagrams from any other address or port never
/// reach it), with a reader task; returns the sockets to send with. Sending goes
/// straight to the (non-blocking) socket: tokio's `try_send` refuses with WouldBlock
/// until the runtime has polled the socket once, which lost a whole window of
/// Accounting-Requests sent at start.
/// One handed over (`taken`) is used as it is: the same source port, so the server's
/// duplicate cache knows the retransmissions of the requests that came along.
#[allow(clippy::too_many_arguments)]
fn udp_sockets(
    acct: bool,
    servers: &[rc::Server],
    source: Option<std::net::IpAddr>,
    tx: &mpsc::Sender<Event>,
    taken: &mut Option<handover::Taken>,
    handing: &mut Handing,
    stop: &tokio::sync::watch::Receiver<bool>,
    readers: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<Vec<std::net::UdpSocket>> {
    use handover::Fd;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut out = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let kind = if acct { Fd::Accounting { server: s.addr } } else { Fd::Radius { server: s.addr } };
        let sock = match taken.as_mut().and_then(|t| t.take(|f| *f == kind)) {
            Some((_, fd)) => std::net::UdpSocket::from(fd),
            None => {
                // the configured source (the configuration checked its family), or any
                let any = if s.addr.is_ipv4() {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                } else {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                };
                let bind = std::net::SocketAddr::new(source.unwrap_or(any), 0);
                let sock = std::net::UdpSocket::bind(bind).with_context(|| format!("RADIUS socket from {bind}"))?;
                sock.connect(s.addr)?;
                sock
            }
        };
        sock.set_nonblocking(true)?;
        handing.keep(kind, &sock)?;
        let reader = crate::sys::async_fd(sock.try_clone()?)?;
        readers.push(spawn_radius_reader(acct, i, reader, tx.clone(), stop.clone()));
        out.push(sock);
    }
    Ok(out)
}

fn spawn_radius_reader(
    acct: bool,
    server: usize,
    sock: tokio::io::unix::AsyncFd<std::net::UdpSocket>,
    tx: mpsc::Sender<Event>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; crate::radius::MAX_LEN + 1];
        loop {
            // receiving is cancel-safe: told to stop, the socket keeps what is not read
            let read = tokio::select! {
                biased;
                _ = stop.changed() => return,
                r = crate::sys::recv_from(&sock, &mut buf) => r,
            };
            match read {
                Ok((n, _)) => {
                    let input = Input::Radius { acct, server, datagram: buf[..n].to_vec() };
                    if tx.send(Event::Input(input)).await.is_err() {
                        return;
                    }
                }
                // ICMP port unreachable from a dead server surfaces here; the client's
                // timers handle the failover.
                Err(e) => debug!(server, "RADIUS socket: {e}"),
            }
        }
    })
}

/// The access ports (each once) and the uplinks: the ports the set-up changes.
fn set_up_ports(cfg: &config::Config) -> (Vec<&str>, Vec<&str>) {
    let mut access: Vec<&str> = cfg.ports.iter().map(|p| p.name.get_ref().as_str()).collect();
    access.sort();
    access.dedup();
    let uplinks = cfg.multicast.iter().flat_map(|m| &m.uplinks).map(|u| u.get_ref().as_str()).collect();
    (access, uplinks)
}

/// The kernel's state of every port the set-up changes, and of the bridge, as it is
/// before the set-up: read before the store is open (a hand-over opens it only after the
/// set-up), kept by [`remember_found`] for the ports it has nothing of.
fn read_found(dataplane: &mut (dyn Dataplane + Send), cfg: &config::Config) -> anyhow::Result<dataplane::Found> {
    let (access, uplinks) = set_up_ports(cfg);
    let all: Vec<&str> = access.into_iter().chain(uplinks).collect();
    Ok(dataplane.found(&cfg.switch.bridge, &all)?)
}

/// Keeps what the set-up changed, as the kernel had it before (`seen`), for `mcgate
/// teardown`. What is stored stays while mcgate's set-up is in place (the kernel then
/// holds mcgate's values); it is taken anew for a port found unlocked (new in the
/// configuration, or its kernel state gone), and everything is when no port was locked
/// (a first start, a reboot, a rebuilt bridge).
fn remember_found(
    store: &Store,
    seen: dataplane::Found,
    cfg: &config::Config,
    unlocked: &[String],
) -> anyhow::Result<()> {
    let mut found = store.found()?.unwrap_or_default();
    let (access, uplinks) = set_up_ports(cfg);
    let fresh = unlocked.len() == access.len();
    let stale: Vec<&str> = (access.into_iter())
        .chain(uplinks)
        .filter(|p| fresh || unlocked.iter().any(|u| u == p) || !found.ports.contains_key(*p))
        .collect();
    if stale.is_empty() && !found.bridge.is_empty() {
        return Ok(());
    }
    let is_stale = |p: &String| stale.contains(&p.as_str());
    let now = dataplane::Found {
        ports: seen.ports.into_iter().filter(|(p, _)| is_stale(p)).collect(),
        vlans: seen.vlans.into_iter().filter(|(p, _)| is_stale(p)).collect(),
        ..seen
    };
    if fresh || found.bridge.is_empty() {
        found.bridge = now.bridge;
    }
    found.ports.extend(now.ports);
    found.vlans.extend(now.vlans);
    if fresh || found.vlan_snooping.is_none() {
        found.vlan_snooping = now.vlan_snooping;
    }
    store.set_found(Some(&found))?;
    Ok(())
}
