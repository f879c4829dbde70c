//! Durations as configuration and policy files write them, in humantime's syntax:
//! `"500ms"`, `"30s"`, `"5m"`, `"1h30m"`, `"2days"` (a number and a unit, repeated).

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// The longest duration any setting takes: a year. Timers are `now + duration`, and
/// an `Instant` far enough in the future panics; nothing a switch waits for is longer.
pub const MAX: Duration = Duration::from_secs(366 * 24 * 3600);

/// `"30s"`, `"500ms"`, `"1h30m"`, ... (humantime, checked arithmetic), at most [`MAX`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let d =
        humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like \"30s\" or \"1h30m\": {e}"))?;
    if d > MAX {
        return Err(format!("{s:?} is longer than a year, the longest duration mcgate takes"));
    }
    Ok(d)
}

pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// A duration where `"0s"` means off (`None`).
pub fn duration_or_off<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Ok(Some(duration(d)?).filter(|d| !d.is_zero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
        // overflow in the multiplication, and merely too long: refused, never a panic
        assert!(parse_duration("18446744073709551615h").is_err());
        assert!(parse_duration("5124095576030431m").is_err());
        assert!(parse_duration("367d").is_err());
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2days"), Ok(Duration::from_secs(2 * 86_400)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5s").is_err());
        assert_eq!(parse_duration("8784h"), Ok(MAX));
        assert!(parse_duration("8785h").is_err());
    }
}
