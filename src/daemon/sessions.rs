//! 802.1X and MAB sessions in the daemon: what the authenticator decides carried out
//! (EAPOL frames, RADIUS requests, ports opened once the Start is durable, closed at
//! once), sessions continued or ended at start, MAB learning paused on a full port.

use super::*;

/// This kernel's boot: kernel state stored under another one is gone.
pub(super) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map_or_else(|_| String::new(), |s| s.trim().to_string())
}

impl Daemon {
    /// True when nothing of a previous run continues: first start, a start after a
    /// reboot or a teardown, or with the kernel state gone otherwise (ports not locked).
    pub(super) fn cold_start(&mut self, kernel_state_gone: bool, boot_id: &str) -> bool {
        let now = boot_id;
        let stored = self.store.boot_id().unwrap_or_else(|e| {
            error!("reading the boot id: {e}");
            None
        });
        if stored.as_deref() == Some(now) && !kernel_state_gone {
            return false;
        }
        if let Err(e) = self.store.set_boot_id(now) {
            error!("storing the boot id: {e}");
        }
        info!(previous = stored.as_deref().unwrap_or("none"), "cold start: Accounting-On");
        true
    }

    /// When the previous run was last known alive: the time of the Stops it could not
    /// send itself.
    pub(super) fn last_alive(&self) -> u64 {
        self.store.alive().unwrap_or(0)
    }

    /// Restores stored sessions whose kernel state is, or can be made, consistent;
    /// removes authorizations the store does not justify. After a cold start the
    /// stored sessions are over: they get their Stop at the time last known alive.
    pub(super) fn restore(&mut self, now: Instant, cold: bool) {
        let stored = match self.store.sessions() {
            Ok(s) => s,
            Err(e) => {
                error!("reading sessions: {e}");
                self.io.store_errors += 1;
                vec![]
            }
        };
        let unix = self.clock.unix;
        // what the kernel holds, in one dump: a session whose entry is there is not
        // authorized again, an entry without a session goes
        let mut found = self.authorized_hosts().unwrap_or_else(|e| {
            error!("listing authorizations: {e}");
            self.io.dataplane_errors += 1;
            Default::default()
        });
        let (mut restored, mut ended) = (0usize, 0usize);
        for s in stored {
            let s = match s {
                Ok(s) => s,
                Err(e) => {
                    error!("{e}");
                    self.io.store_errors += 1;
                    continue;
                }
            };
            let Some(port) = self.port_of(&s.port, s.vlan) else {
                info!(port = s.port, mac = %s.mac, "port no longer configured: session ended");
                self.acct_session_stop(None, &s, crate::acct::TerminateCause::AdminReset, unix);
                ended += 1;
                continue;
            };
            if cold {
                debug!(port = s.port, mac = %s.mac, session = s.session_id, "session of an earlier boot ended");
                let time = self.last_alive().max(s.since);
                self.acct_session_stop(Some(port), &s, crate::acct::TerminateCause::NasReboot, time);
                ended += 1;
                continue;
            }
            if !found.remove(&(port, s.mac)) {
                if let Err(e) = self.dataplane.authorize(&self.ports[port].at(), s.mac) {
                    error!(port = s.port, mac = %s.mac, "re-authorizing: {e}");
                    self.io.dataplane_errors += 1;
                }
            }
            debug!(port = s.port, mac = %s.mac, account = s.account, session = s.session_id, "session restored");
            self.auth.handle_input(
                now,
                auth::Input::Restore {
                    port,
                    mac: s.mac,
                    method: s.method,
                    account: s.account.clone(),
                    attrs: s.attrs.clone(),
                    age: Duration::from_secs(unix.saturating_sub(s.since)),
                },
            );
            self.acct_session_continued(now, port, &s);
            self.open_session(port, s);
            restored += 1;
        }
        if restored + ended > 0 {
            info!(restored, ended, "sessions of the last run");
        }
        // entries left over: a session of an earlier boot's, or nobody's
        for (port, mac) in found {
            let at = self.ports[port].at();
            info!(port = %at, mac = %mac, "authorization without a session removed");
            if self.dataplane.deauthorize(&at, mac).is_err() {
                self.io.dataplane_errors += 1;
            }
        }
    }

    /// The hosts the kernel lets through the access ports' locks (their static FDB
    /// entries), read in one dump.
    pub(super) fn authorized_hosts(
        &mut self,
    ) -> Result<std::collections::HashSet<(PortId, MacAddr)>, crate::dataplane::Error> {
        let ats: Vec<PortVlan> = self.ports.iter().map(Port::at).collect();
        let index: HashMap<&PortVlan, PortId> = ats.iter().enumerate().map(|(i, at)| (at, i)).collect();
        let all = self.dataplane.authorized_on(&ats)?;
        Ok(all.into_iter().filter_map(|(at, mac)| Some((*index.get(&at)?, mac))).collect())
    }

    /// Each MAB port learns unknown MACs only while it has room for another host (a
    /// port with MAB in several VLANs: while one of them has room; the kernel's switch
    /// is the port's).
    pub(super) fn sync_mab_learning(&mut self) {
        let mut wanted = vec![false; self.ports.len()];
        for i in 0..self.ports.len() {
            wanted[self.ports[i].interface] |= self.auth.mab_learning(i);
        }
        for (i, (p, want)) in self.ports.iter_mut().zip(wanted).enumerate() {
            if p.interface != i || want == p.mab_learning {
                continue;
            }
            match self.dataplane.set_mab_learning(&p.name, want) {
                Ok(()) if want => info!(port = p.name, "port has room for a host again: MAC bypass learns again"),
                Ok(()) => {
                    self.io.mab_learning_paused += 1;
                    warn!(
                        port = p.name,
                        "port holds its maximum of hosts: MAC bypass stops learning (locked entries flushed)"
                    );
                }
                // counted and logged once, not tried again on every event: the next
                // change of the port's room tries again
                Err(e) => {
                    self.io.dataplane_errors += 1;
                    warn!(port = p.name, on = want, "MAB learning: {e}");
                }
            }
            p.mab_learning = want;
        }
    }

    /// Sends a RADIUS request. One that does not fit RADIUS's bounds is refused by the
    /// client (and counted there) and answered here as a rejection — for a per-join
    /// question never as "no server answered", which a fail-open package would admit.
    pub(super) fn radius_send(&mut self, now: Instant, token: RadiusFor, request: rc::Request) {
        let Err(e) = self.radius.send(now, token, request) else { return };
        error!(?token, "RADIUS request refused, not sent: {e}");
        match token {
            RadiusFor::PerJoin(t) => self.per_join_decided(now, t, crate::mcast::RadiusAnswer::Reject { ttl: None }),
            RadiusFor::Auth(token) => self.auth.handle_input(now, auth::Input::RadiusFailed { token }),
        }
    }

    pub(super) fn auth_output(&mut self, now: Instant, o: auth::Output) {
        match o {
            auth::Output::TxEapol { port, dst, pdu } => {
                let p = &self.ports[port];
                let frame = ethernet::emit_frame_in(p.tag, dst, p.mac, ethernet::ETHERTYPE_EAPOL, &pdu);
                match self.net.send_frame(port, &frame) {
                    Ok(()) => self.io.frames_tx += 1,
                    Err(e) => {
                        self.io.frames_tx_errors += 1;
                        debug!(port = p.name, mac = %dst, "EAPOL send: {e}");
                    }
                }
            }
            auth::Output::Radius { token, request } => self.radius_send(now, RadiusFor::Auth(token), request),
            auth::Output::CancelRadius { token } => self.radius.cancel(RadiusFor::Auth(token)),
            auth::Output::Authorized { port, mac, method, account, attrs } => {
                let name = self.ports[port].name.clone();
                self.mcast_forget_entitlement(port, mac);
                // the VLAN RADIUS assigned, or the listing's own: the port is moved there
                // if it may be, or the host is not authorized (RFC 3580: a Reject)
                if let Err(why) = self.place_host(now, port, mac, attrs.vlan.as_ref()) {
                    warn!(port = %self.ports[port].at(), mac = %mac, account, "VLAN assignment refused; not authorized: {why}");
                    self.auth.handle_input(now, auth::Input::Kick { port, mac });
                    return;
                }
                // The port opens once the session (and its Start) is durable.
                let session = match self.close_session(port, mac) {
                    // re-authentication: same session, new attributes (`place_host`
                    // moved it to a new VLAN, if any)
                    Some(mut s) => {
                        s.account = account;
                        s.attrs = attrs;
                        self.acct.op(Op::PutSession(s.clone()));
                        self.acct.grant(acct::Grant { port, mac });
                        s
                    }
                    None => {
                        let s = Session {
                            port: name.clone(),
                            vlan: self.ports[port].vlan,
                            mac,
                            account,
                            method,
                            session_id: format!("{:08X}{:08X}", self.clock.unix as u32, self.rng.gen::<u32>()),
                            since: self.clock.unix,
                            attrs,
                        };
                        if !self.acct_session_start(now, port, &s) {
                            // no Start, no session: the authenticator forgets the host
                            self.auth.handle_input(now, auth::Input::Kick { port, mac });
                            return;
                        }
                        s
                    }
                };
                info!(port = name, mac = %mac, account = session.account, session = session.session_id, "port open");
                self.open_session(port, session);
            }
            auth::Output::Deauthorized { port, mac, cause } => self.end_session(now, port, mac, cause),
            auth::Output::Rejected { port, mac, method, account } => {
                info!(port = self.ports[port].name, mac = %mac, account, ?method, "rejected");
            }
            auth::Output::ForgetLocked { port, mac } => {
                if self.dataplane.deauthorize(&self.ports[port].at(), mac).is_err() {
                    self.io.dataplane_errors += 1;
                }
            }
        }
    }

    pub(super) fn end_session(&mut self, now: Instant, port: PortId, mac: MacAddr, cause: EndCause) {
        let at = self.ports[port].at();
        // its streams stop with it (the port lock filters ingress only), their Stops
        // saying why the session ended
        self.mcast_end_host(now, port, mac, cause);
        // Fail closed first: the kernel stops the host before the record goes (and an
        // authorization still waiting for its commit never happens).
        self.acct.cancel(acct::Grant { port, mac });
        if let Err(e) = self.dataplane.deauthorize(&at, mac) {
            self.io.dataplane_errors += 1;
            error!(port = %at, mac = %mac, "deauthorizing: {e}");
        }
        let s = self.close_session(port, mac);
        if let Some(s) = &s {
            self.acct_session_stop(Some(port), s, cause.into(), self.clock.unix);
        }
        self.release_vlan(now, port);
        info!(
            port = %at,
            mac = %mac,
            account = s.as_ref().map(|s| s.account.as_str()),
            session = s.as_ref().map(|s| s.session_id.as_str()),
            ?cause,
            "port closed"
        );
    }
}
