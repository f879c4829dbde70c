//! The daemon as a process: the kernel and socket set-up, the reader tasks (a capture
//! task per access port, one per RADIUS socket) and the event loop that feeds the core
//! and sleeps until its next timer.

use super::*;

/// Runs the daemon until SIGTERM or SIGINT. Kernel state (locked ports, authorized
/// MACs) stays in place on exit: while mcgate is down nothing new gets in and what
/// was admitted keeps working.
pub async fn run(loaded: Loaded) -> anyhow::Result<()> {
    let cfg = &loaded.config;
    let store = Store::open(&cfg.switch.database)
        .with_context(|| format!("opening database {}", cfg.switch.database.display()))?;

    let mut nl = Netlink::open()?;
    let links = nl.links()?;
    let bridge = links
        .iter()
        .find(|l| l.name == cfg.switch.bridge)
        .ok_or_else(|| anyhow!("bridge {} not found", cfg.switch.bridge))?;
    let (tx, mut rx) = mpsc::channel::<Event>(4096);
    // CoA/Disconnect requests wait in a queue of their own (see das::spawn_reader)
    let (das_tx, mut das_rx) = mpsc::channel::<Event>(das::QUEUE);

    let mut ports = Vec::new();
    let mut port_sockets = Vec::new();
    for p in &cfg.ports {
        let name = p.name.get_ref().clone();
        let link = links.iter().find(|l| l.name == name).ok_or_else(|| anyhow!("port {name} not found"))?;
        if link.master != Some(bridge.index) {
            return Err(anyhow!("port {name} is not a member of bridge {}", cfg.switch.bridge));
        }
        let mac = link.mac.ok_or_else(|| anyhow!("port {name} has no MAC address"))?;
        port_sockets.push(Arc::new(PortSocket::open(link.index).with_context(|| format!("capture on {name}"))?));
        let mab_learning = p.mode.uses_mab();
        ports.push(Port { name, ifindex: link.index, mac, limits: Default::default(), mab_learning });
    }

    let mut dataplane: Box<dyn Dataplane + Send> =
        if cfg.switch.audit { Box::new(dataplane::Audit) } else { Box::new(dataplane::linux::LinuxBridge::new()?) };
    // an unlocked port: what an earlier run left in the kernel is gone (reboot, rebuilt bridge)
    let unlocked: Vec<String> =
        ports.iter().filter(|p| !dataplane.is_locked(&p.name).unwrap_or(false)).map(|p| p.name.clone()).collect();
    let kernel_state_gone = !unlocked.is_empty();
    remember_found(&store, dataplane.as_mut(), cfg, &unlocked).context("reading the kernel state before set-up")?;
    for (p, c) in ports.iter().zip(&cfg.ports) {
        dataplane.setup_port(&p.name, c.mode).with_context(|| format!("locking port {}", p.name))?;
    }
    // Acct-Session-Ids of memberships: unique across runs
    let run_id = rand::random::<u32>();
    let (mcast, uplink_sockets) = match (&cfg.multicast, &loaded.policy) {
        (Some(mc), Some(policy)) => {
            let names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
            let (m, uplinks) = mcast::McastState::set_up(
                cfg,
                mc,
                policy,
                &names,
                &links,
                bridge,
                &mut nl,
                dataplane.as_mut(),
                run_id,
            )?;
            (Some(m), uplinks)
        }
        _ => (None, vec![]),
    };

    let servers = loaded.radius_servers();
    let radius_sockets = udp_sockets(false, &servers, &tx)?;
    let acct_sockets = udp_sockets(true, &loaded.acct_servers(), &tx)?;
    let mut das_socket = None;
    let das = match &cfg.dynamic_authorization {
        Some(da) => {
            let sock = std::net::UdpSocket::bind(da.listen)
                .with_context(|| format!("dynamic authorization socket {}", da.listen))?;
            sock.set_nonblocking(true)?;
            let addresses: Vec<_> = da.clients.iter().map(|c| c.get_ref().address).collect();
            let reader = Arc::new(das::ReaderStats::default());
            das::spawn_reader(UdpSocket::from_std(sock.try_clone()?)?, addresses.clone(), das_tx, reader.clone());
            let clients = addresses.into_iter().zip(loaded.das_secrets.iter().cloned()).collect();
            info!(listen = %da.listen, "dynamic authorization (RFC 5176) on");
            das_socket = Some(sock);
            Some(das::Das::new(reader, clients, da.event_timestamp_window.as_secs()))
        }
        None => None,
    };
    let net = Box::new(net::Sockets {
        ports: port_sockets.clone(),
        uplinks: uplink_sockets,
        radius: radius_sockets,
        accounting: acct_sockets,
        das: das_socket,
        nl,
    });
    let mut d = Daemon::new(&loaded, ports, dataplane, store, net, mcast, das)?;
    d.start(Instant::now(), kernel_state_gone, run_id);
    if kernel_state_gone {
        info!(ports = ?unlocked, "ports were not locked: nothing of an earlier run continues");
    }
    for (i, (p, socket)) in d.ports.iter().zip(port_sockets).enumerate() {
        spawn_capture(i, p, socket, loaded.limits(), tx.clone());
    }
    let (kernel_tx, mut kernel_rx) = mpsc::channel(kernel::QUEUE);
    kernel::spawn_reader(d.ports.iter().map(|p| p.ifindex).collect(), kernel_tx)?;
    if let Some(m) = &cfg.metrics {
        metrics::serve(metrics::bind(m.listen).await.with_context(|| format!("metrics on {}", m.listen))?, tx.clone());
    }
    control::serve(control::bind(&cfg.switch.control_socket)?, tx.clone());

    // Link state last: a port that is up gets its first Request/Identity now.
    let now = Instant::now();
    for (i, p) in d.ports.iter().enumerate() {
        let running = links.iter().any(|l| l.index == p.ifindex && l.running);
        let input = if running { Input::LinkUp { port: i } } else { Input::LinkDown { port: i } };
        d.auth.handle_input(now, input);
    }
    d.drain(now);
    info!(ports = d.ports.len(), sessions = d.sessions.len(), "mcgate running");

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        let mcast_deadline = d.mcast.as_ref().and_then(|m| m.tracker.poll_timeout());
        let reconcile = d.reconcile_due(Instant::now());
        let deadline =
            [d.auth.poll_timeout(), d.radius.poll_timeout(), mcast_deadline, d.acct.poll_timeout(), reconcile]
                .into_iter()
                .flatten()
                .min();
        let sleep = tokio::time::sleep_until(
            deadline.map_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600), Into::into),
        );
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                let now = Instant::now();
                d.handle_event(now, ev);
                // what else is waiting goes into the same commit (group commit)
                for _ in 0..BATCH_EVENTS {
                    let Ok(ev) = rx.try_recv() else { break };
                    d.handle_event(now, ev);
                }
            }
            Some(ev) = das_rx.recv() => d.handle_event(Instant::now(), ev),
            Some(msg) = kernel_rx.recv() => d.kernel_msg(Instant::now(), msg),
            _ = sleep => {
                let now = Instant::now();
                d.radius.handle_timeout(now);
                d.auth.handle_timeout(now);
                if let Some(m) = d.mcast.as_mut() {
                    m.tracker.handle_timeout(now);
                }
                d.acct_timeout(now);
                d.reconcile_timeout(now);
            }
            _ = sighup.recv() => {
                match d.policy_reload(Instant::now()) {
                    Ok(done) => info!("SIGHUP: {done}"),
                    Err(e) => error!("SIGHUP: policy not reloaded, nothing changed: {e}"),
                }
            }
            _ = sigterm.recv() => { info!("SIGTERM: stopping; kernel state left in place"); break }
            _ = tokio::signal::ctrl_c() => { info!("SIGINT: stopping; kernel state left in place"); break }
        }
        d.drain(Instant::now());
        if let Some(m) = d.mcast.as_mut() {
            m.stats.batch_since = None;
        }
    }
    // what the last events did is committed before the process goes (its grants too)
    d.drain(Instant::now());
    let _ = std::fs::remove_file(&cfg.switch.control_socket);
    Ok(())
}

/// The port's capture task: frames the kernel filter passed, through the port's flood
/// limiter (here, so that a flooding port's excess never reaches the shared queue), to
/// the actor.
fn spawn_capture(port: PortId, p: &Port, socket: Arc<PortSocket>, limits: limit::Config, tx: mpsc::Sender<Event>) {
    let (stats, name) = (p.limits.clone(), p.name.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        let mut limiter = limit::PortLimiter::new(limits, Instant::now());
        let mut tagged_log = crate::rate::LogLimit::per_minute(256);
        loop {
            let (n, info) = match socket.recv(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    error!(port, "capture: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if info.pkttype == sys::PACKET_OUTGOING {
                continue;
            }
            let Ok(frame) = ethernet::Frame::new_checked(&buf[..n]) else {
                continue;
            };
            let now = Instant::now();
            // The kernel takes an 802.1Q tag off before the tap (it comes as auxdata):
            // without this a tagged EAPOL-Start or report would pass for an untagged one.
            if let Some(vid) = info.vlan {
                stats.dropped_tagged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if tagged_log.allow(now, frame.src()) {
                    warn!(port = name, mac = %frame.src(), vid, ethertype = format!("{:#06x}", frame.ethertype()), "tagged frame dropped: VLANs are not configured (logged once a minute per host)");
                }
                continue;
            }

            let verdict = match frame.ethertype() {
                ethernet::ETHERTYPE_EAPOL => limiter.eapol(now, &stats),
                _ => {
                    let was = stats.quarantined.load(std::sync::atomic::Ordering::Relaxed);
                    let v = limiter.report(now, frame.src(), &stats);
                    if v == limit::Verdict::QuarantineStarts {
                        warn!(port = name, mac = %frame.src(), "port quarantined: IGMP/MLD over its rate for {:?}; new joins dropped for {:?}, admitted streams stay", limits.quarantine_after, limits.quarantine_time);
                    } else if was && v == limit::Verdict::Pass {
                        info!(port = name, "port released from quarantine");
                    }
                    v
                }
            };
            if verdict != limit::Verdict::Pass {
                continue;
            }
            let ev = match frame.ethertype() {
                ethernet::ETHERTYPE_EAPOL => Event::Eapol { port, src: frame.src(), pdu: frame.payload().to_vec() },
                ethertype => {
                    Event::Mcast { port, src: frame.src(), ethertype, payload: frame.payload().to_vec(), at: now }
                }
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    });
}

/// A UDP socket per server, connected (datagrams from any other address or port never
/// reach it), with a reader task; returns the sockets to send with. Sending goes
/// straight to the (non-blocking) socket: tokio's `try_send` refuses with WouldBlock
/// until the runtime has polled the socket once, which lost a whole window of
/// Accounting-Requests sent at start.
fn udp_sockets(
    acct: bool,
    servers: &[rc::Server],
    tx: &mpsc::Sender<Event>,
) -> anyhow::Result<Vec<std::net::UdpSocket>> {
    let mut out = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let bind: std::net::SocketAddr = if s.addr.is_ipv4() { "0.0.0.0:0".parse()? } else { "[::]:0".parse()? };
        let sock = std::net::UdpSocket::bind(bind)?;
        sock.connect(s.addr)?;
        sock.set_nonblocking(true)?;
        let reader = UdpSocket::from_std(sock.try_clone()?)?;
        spawn_radius_reader(acct, i, Arc::new(reader), tx.clone());
        out.push(sock);
    }
    Ok(out)
}

fn spawn_radius_reader(acct: bool, server: usize, sock: Arc<UdpSocket>, tx: mpsc::Sender<Event>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; crate::radius::MAX_LEN + 1];
        loop {
            match sock.recv(&mut buf).await {
                Ok(n) => {
                    if tx.send(Event::Radius { acct, server, bytes: buf[..n].to_vec() }).await.is_err() {
                        return;
                    }
                }
                // ICMP port unreachable from a dead server surfaces here; the client's
                // timers handle the failover.
                Err(e) => debug!(server, "RADIUS socket: {e}"),
            }
        }
    });
}

/// Keeps what the set-up is about to change, as the kernel has it now, for `mcgate
/// teardown`. What is stored stays while mcgate's set-up is in place (the kernel then
/// holds mcgate's values); it is read again for a port found unlocked (new in the
/// configuration, or its kernel state gone), and everything is when no port is locked
/// (a first start, a reboot, a rebuilt bridge).
fn remember_found(
    store: &Store,
    dataplane: &mut (dyn Dataplane + Send),
    cfg: &config::Config,
    unlocked: &[String],
) -> anyhow::Result<()> {
    let mut found = store.found()?.unwrap_or_default();
    let access = cfg.ports.iter().map(|p| p.name.get_ref().as_str());
    let uplinks = cfg.multicast.iter().flat_map(|m| &m.uplinks).map(|u| u.get_ref().as_str());
    let fresh = unlocked.len() == cfg.ports.len();
    let stale: Vec<&str> = access
        .chain(uplinks)
        .filter(|p| fresh || unlocked.iter().any(|u| u == p) || !found.ports.contains_key(*p))
        .collect();
    if stale.is_empty() && !found.bridge.is_empty() {
        return Ok(());
    }
    let now = dataplane.found(&cfg.switch.bridge, &stale)?;
    if fresh || found.bridge.is_empty() {
        found.bridge = now.bridge;
    }
    found.ports.extend(now.ports);
    store.set_found(Some(&found))?;
    Ok(())
}
