//! What the service manager is told when systemd runs mcgate as `Type=notify`
//! (sd_notify(3), through the sd-notify crate): `READY=1` once the ports are locked and
//! capture runs, `STATUS=` lines, `STOPPING=1`, and `WATCHDOG=1` from the event loop
//! itself — a loop that hangs (a switch that admits no one) stops the pings, and systemd
//! restarts the service after `WatchdogSec=`. Without `NOTIFY_SOCKET` every call is a
//! no-op.

use std::time::Duration;
use tracing::warn;

/// How often the loop reports in when nothing asks for more: the `STATUS=` line.
const STATUS_EVERY: Duration = Duration::from_secs(10);

pub(super) struct Notifier {
    /// Whether a service manager listens (`NOTIFY_SOCKET` was set).
    on: bool,
    /// `WATCHDOG_USEC`, when systemd expects pings.
    watchdog: Option<Duration>,
    /// The last send failed (logged once until one succeeds again).
    failing: bool,
}

impl Notifier {
    pub fn from_env() -> Self {
        let mut usec = 0;
        // sd_watchdog_enabled(3): WATCHDOG_PID, when set, must be this process (the crate
        // also wants it set; `mcgate upgrade` passes the interval without it)
        let unclaimed = || std::env::var_os("WATCHDOG_PID").is_none();
        let usec = (sd_notify::watchdog_enabled(false, &mut usec).then_some(usec))
            .or_else(|| std::env::var("WATCHDOG_USEC").ok().filter(|_| unclaimed())?.parse().ok());
        let watchdog = usec.map(Duration::from_micros);
        Notifier {
            on: std::env::var_os("NOTIFY_SOCKET").is_some(),
            watchdog: watchdog.filter(|d| !d.is_zero()),
            failing: false,
        }
    }

    /// The loop's tick: half the watchdog's timeout (as sd_watchdog_enabled(3) advises),
    /// or the status interval; none without a service manager.
    pub fn every(&self) -> Option<Duration> {
        self.on.then(|| self.watchdog.map_or(STATUS_EVERY, |w| (w / 2).min(STATUS_EVERY)))
    }

    pub fn ready(&mut self, status: &str) {
        self.send(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(status)]);
    }

    /// From the event loop: alive (when a watchdog runs), and what it holds.
    pub fn tick(&mut self, status: &str) {
        if self.watchdog.is_some() {
            self.send(&[sd_notify::NotifyState::Watchdog, sd_notify::NotifyState::Status(status)]);
        } else {
            self.send(&[sd_notify::NotifyState::Status(status)]);
        }
    }

    pub fn status(&mut self, status: &str) {
        self.send(&[sd_notify::NotifyState::Status(status)]);
    }

    pub fn stopping(&mut self) {
        self.send(&[sd_notify::NotifyState::Stopping, sd_notify::NotifyState::Status("stopping")]);
    }

    fn send(&mut self, states: &[sd_notify::NotifyState]) {
        if !self.on {
            return;
        }
        match sd_notify::notify(false, states) {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                warn!("telling the service manager (NOTIFY_SOCKET): {e}");
            }
            Err(_) => {}
        }
    }
}
