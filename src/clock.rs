//! The wall clock, in the engine's unit. The engine never reads it: the runtime passes the time
//! in with every event.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::engine::Timestamp;

/// Now, in milliseconds since the Unix epoch.
pub fn now() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
}

/// `20261121T233420Z`-style compact UTC time (release ids).
pub fn compact(t: Timestamp) -> String {
    t.rfc3339().replace(['-', ':'], "").chars().take(15).collect::<String>() + "Z"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_time_is_second_resolution_utc() {
        assert_eq!(compact(Timestamp(1_763_768_060_123)), "20251121T233420Z");
    }
}
