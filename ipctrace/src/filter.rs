//! What the user asked to see (`--pid`, `--comm`, `--type`, `--id`, `--key`, the command to
//! follow, `--failed`, `--min-lat`, `--min-blocked`): parsed and checked here, then applied in
//! the kernel by the loader. Values of one flag are alternatives; different flags must all match.

use crate::decoder::syscalls::IpcKind;
use anyhow::{bail, Result};
use ipctrace_common as common;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
    /// Empty: all three kinds.
    pub kinds: Vec<IpcKind>,
    pub ids: Vec<i32>,
    pub keys: Vec<i32>,
    /// `-- CMD`: only this process and every process it forks from now on.
    pub follow: Option<u32>,
    /// `--failed`: only calls that returned an error.
    pub only_failed: bool,
    /// `--min-lat`: only calls that took at least this long.
    pub min_lat: Option<Duration>,
    /// `--min-blocked`: only calls that slept at least this long waiting.
    pub min_blocked: Option<Duration>,
}

impl Filter {
    pub fn validate(&self) -> Result<()> {
        if self.pids.len() > common::MAX_FILTER_PIDS {
            bail!("at most {} --pid values", common::MAX_FILTER_PIDS);
        }
        if self.comms.len() > common::MAX_FILTER_COMMS {
            bail!("at most {} --comm values", common::MAX_FILTER_COMMS);
        }
        if self.comms.iter().any(|c| c.is_empty()) {
            bail!("--comm needs a name");
        }
        Ok(())
    }

    /// The kinds of object to trace (all when none were named).
    pub fn kinds(&self) -> Vec<IpcKind> {
        if self.kinds.is_empty() {
            IpcKind::ALL.to_vec()
        } else {
            IpcKind::ALL
                .into_iter()
                .filter(|k| self.kinds.contains(k))
                .collect()
        }
    }

    pub fn filters_objects(&self) -> bool {
        !self.ids.is_empty() || !self.keys.is_empty()
    }

    /// A one-line description for the `Tracing ...` banner.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let kinds: Vec<&str> = self.kinds().iter().map(|k| k.name()).collect();
        parts.push(format!("SysV IPC ({})", kinds.join(", ")));
        if !self.pids.is_empty() {
            parts.push(format!("pid {}", join(&self.pids)));
        }
        if !self.comms.is_empty() {
            parts.push(format!("comm {}", self.comms.join(",")));
        }
        if !self.ids.is_empty() {
            parts.push(format!("id {}", join(&self.ids)));
        }
        if let Some(pid) = self.follow {
            parts.push(format!("command pid {pid} and its children"));
        }
        if self.only_failed {
            parts.push("failed calls".into());
        }
        if let Some(d) = self.min_lat {
            parts.push(format!("lat >= {d:?}"));
        }
        if let Some(d) = self.min_blocked {
            parts.push(format!("blocked >= {d:?}"));
        }
        if !self.keys.is_empty() {
            let keys: Vec<String> = self
                .keys
                .iter()
                .map(|k| format!("{:#x}", *k as u32))
                .collect();
            parts.push(format!("key {}", keys.join(",")));
        }
        parts.join(", ")
    }
}

fn join<T: ToString>(values: &[T]) -> String {
    values
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses an IPC key as people write it: decimal (negative too, as /proc/sysvipc prints keys
/// >= 0x80000000) or 0x hex.
pub fn parse_key(s: &str) -> Result<i32, String> {
    let s = s.trim();
    let parsed = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).map(|k| k as i32).ok()
    } else if s.starts_with('-') {
        s.parse::<i32>().ok()
    } else {
        s.parse::<u32>().map(|k| k as i32).ok()
    };
    parsed.ok_or_else(|| format!("'{s}' is not an IPC key (decimal, or hex like 0x1234abcd)"))
}

/// Parses a duration as people write it: 10ms, 1.5s, 250us (or µs), 800ns; a bare number is
/// milliseconds, as bcc's *slower tools take it.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "" | "ms" => 1e-3,
        "s" => 1.0,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        _ => f64::NAN,
    };
    number
        .parse::<f64>()
        .ok()
        .map(|v| v * scale)
        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("'{s}' is not a duration (like 10ms, 1.5s, 250us; a number is ms)"))
}

/// Parses an object type name.
pub fn parse_kind(s: &str) -> Result<IpcKind, String> {
    IpcKind::ALL
        .into_iter()
        .find(|k| k.name() == s)
        .ok_or_else(|| format!("'{s}' is not an IPC type: use sem, shm or msg"))
}

/// Parses an object id (ids are non-negative ints).
pub fn parse_id(s: &str) -> Result<i32, String> {
    s.trim()
        .parse::<i32>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| format!("'{s}' is not an IPC id (a number >= 0)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_every_notation() {
        assert_eq!(parse_key("0x1234"), Ok(0x1234));
        assert_eq!(parse_key("4660"), Ok(0x1234));
        assert_eq!(parse_key("0xdeadbeef"), Ok(0xdeadbeef_u32 as i32));
        assert_eq!(parse_key("3735928559"), Ok(0xdeadbeef_u32 as i32));
        assert_eq!(parse_key("-559038737"), Ok(0xdeadbeef_u32 as i32));
        assert!(parse_key("0x1_0000_0000").is_err());
        assert!(parse_key("banana").is_err());
        assert!(parse_key("").is_err());
    }

    #[test]
    fn durations_with_units_or_milliseconds() {
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("800ns"), Ok(Duration::from_nanos(800)));
        for bad in ["", "fast", "10 min", "-3ms", "ms", "1e3"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kinds_and_ids() {
        assert_eq!(parse_kind("sem"), Ok(IpcKind::Sem));
        assert!(parse_kind("pipe").is_err());
        assert_eq!(parse_id("32768"), Ok(32768));
        assert!(parse_id("-1").is_err());
        let f = Filter {
            kinds: vec![IpcKind::Msg, IpcKind::Sem],
            ..Default::default()
        };
        assert_eq!(f.kinds(), vec![IpcKind::Sem, IpcKind::Msg]);
        assert_eq!(Filter::default().kinds().len(), 3);
    }

    #[test]
    fn limits_are_checked() {
        let f = Filter {
            pids: (1..=9).collect(),
            ..Default::default()
        };
        assert!(f.validate().is_err());
        let f = Filter {
            comms: vec![String::new()],
            ..Default::default()
        };
        assert!(f.validate().is_err());
        let f = Filter {
            pids: vec![1, 2],
            keys: vec![0x10],
            ..Default::default()
        };
        assert!(f.validate().is_ok());
        assert_eq!(f.describe(), "SysV IPC (shm, sem, msg), pid 1,2, key 0x10");
    }
}
