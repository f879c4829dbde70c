//! Free previews: a package's channel watched for a while by a subscriber without it,
//! counted per (account, channel) over a day, ended on time however long the host stays.

use super::*;

impl Tracker {
    /// A free preview, if the subscriber's quota for the channel allows one now.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_preview(
        &mut self,
        now: Instant,
        unix: u64,
        who: &Who<'_>,
        ch: Channel,
        package: &str,
        kbps: u32,
        preview: Preview,
        upstream: &mut Upstream,
    ) {
        let starts = self.previews.entry((who.account.clone(), ch)).or_default();
        starts.retain(|t| unix.saturating_sub(*t) < DAY);
        let too_soon = starts.last().is_some_and(|t| unix.saturating_sub(*t) < preview.min_gap.as_secs());
        if starts.len() as u32 >= preview.views_per_day || too_soon {
            return self.deny(who, ch, DenyReason::PreviewExhausted);
        }
        starts.push(unix);
        self.stats.previews += 1;
        self.admit(now, unix, who, ch, format!("preview:{package}").into(), kbps, upstream);
        if let Some(h) = self.hosts.get_mut(&(who.port, who.mac)).and_then(|m| m.get_mut(&ch)) {
            let ends = now + preview.duration;
            h.preview_ends = Some(ends);
            self.member_due(ends);
        }
    }
}
