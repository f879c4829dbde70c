//! `Instant`s in a form another process of the same machine reads back as the same
//! moments: nanoseconds of CLOCK_MONOTONIC, the clock `Instant` reads on Linux. The
//! state a hand-over carries (timers, deadlines, token buckets) is written with these
//! (`#[serde(with = "crate::mono")]`, `crate::mono::option` for an `Option<Instant>`).

use crate::sys::monotonic_ns;
use serde::{Deserialize, Deserializer, Serializer};
use std::time::{Duration, Instant};

/// `t` in nanoseconds of CLOCK_MONOTONIC.
pub fn to_ns(t: Instant) -> u64 {
    let (ns, now) = (monotonic_ns(), Instant::now());
    if t >= now {
        ns.saturating_add(u64::try_from((t - now).as_nanos()).unwrap_or(u64::MAX))
    } else {
        ns.saturating_sub(u64::try_from((now - t).as_nanos()).unwrap_or(u64::MAX))
    }
}

/// The `Instant` of `ns` nanoseconds of CLOCK_MONOTONIC; a moment before what this
/// process can name (before the boot) is its now.
pub fn from_ns(ns: u64) -> Instant {
    let (at, now) = (monotonic_ns(), Instant::now());
    if ns >= at {
        // a deadline beyond a century is a century (an Instant would overflow)
        now + Duration::from_nanos(ns - at).min(Duration::from_secs(100 * 365 * 86_400))
    } else {
        now.checked_sub(Duration::from_nanos(at - ns)).unwrap_or(now)
    }
}

pub fn serialize<S: Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(to_ns(*t))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
    u64::deserialize(d).map(from_ns)
}

/// The same for an `Option<Instant>`.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&super::to_ns(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Instant>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(super::from_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_comes_back_as_the_same_moment() {
        let now = Instant::now();
        for t in [now, now + Duration::from_secs(90), now - Duration::from_millis(1500)] {
            let back = from_ns(to_ns(t));
            let off = if back > t { back - t } else { t - back };
            assert!(off < Duration::from_millis(1), "{off:?}");
        }
    }
}
