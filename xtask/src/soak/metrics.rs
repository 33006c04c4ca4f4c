//! The soak's look at `export`: /metrics fetched over plain HTTP/1.0 while the load runs, read
//! into what the checks need: how many series, which objects have series of their own, and
//! ipctrace's own event counts.
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{workload, ObjectId};
use crate::ipc::Kind;
use crate::ipctrace_json::Summary;

/// A scrape waits for export's refresh (at most 5 s), then for the text.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(15);

/// What one scrape said, and when.
#[derive(Debug, Clone)]
pub(super) struct Scrape {
    pub at_s: f64,
    pub series: usize,
    /// Objects (type, namespace, id) with series of their own: `id="other"` is not one.
    pub objects: usize,
    /// The load's objects among them, by kind and id.
    pub soak_objects: BTreeSet<ObjectId>,
    /// The load's objects that the previous scrape showed and /proc/sysvipc no longer listed
    /// before this one was asked for, yet still have series.
    pub stale: BTreeSet<ObjectId>,
    /// ipctrace_events_total, ipctrace_lost_events_total, ipctrace_untracked_total.
    pub own: Summary,
}

/// GET /metrics from export at `at`.
pub(super) fn fetch(at: SocketAddr) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&at, SCRAPE_TIMEOUT)
        .with_context(|| format!("cannot connect to export at {at}"))?;
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    // HTTP/1.0: the server closes the connection after the one response, unchunked.
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .context("reading export's response")?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        bail!("export's response has no header end");
    };
    if !head.starts_with("HTTP/1.") || !head.lines().next().is_some_and(|l| l.contains(" 200")) {
        bail!(
            "export answered {}",
            head.lines().next().unwrap_or_default()
        );
    }
    Ok(body.to_string())
}

/// A scrape's text, read (`at_s` and `stale` are the caller's).
pub(super) fn parse(text: &str) -> Result<Scrape> {
    let mut scrape = Scrape {
        at_s: 0.0,
        series: 0,
        objects: 0,
        soak_objects: BTreeSet::new(),
        stale: BTreeSet::new(),
        own: Summary {
            events: 0,
            lost: 0,
            untracked: 0,
        },
    };
    let mut objects = BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        scrape.series += 1;
        let (name, labels, value) = split_sample(line)
            .with_context(|| format!("export printed a line that is not a sample: {line}"))?;
        match name {
            "ipctrace_events_total" => scrape.own.events = value as u64,
            "ipctrace_lost_events_total" => scrape.own.lost = value as u64,
            "ipctrace_untracked_total" => scrape.own.untracked = value as u64,
            _ => {}
        }
        let label = |want: &str| {
            labels
                .iter()
                .find(|(k, _)| *k == want)
                .map(|(_, v)| v.as_str())
        };
        let (Some(kind), Some(id)) = (label("type"), label("id")) else {
            continue;
        };
        if id == "other" {
            continue;
        }
        objects.insert((
            kind.to_string(),
            label("ipc_ns").unwrap_or_default().to_string(),
            id.to_string(),
        ));
        let key = label("key")
            .and_then(|k| k.strip_prefix("0x"))
            .and_then(|k| i64::from_str_radix(k, 16).ok());
        let kind = Kind::ALL.into_iter().find(|k| k.name() == kind);
        if let (Some(kind), Some(key), Ok(id)) = (kind, key, id.parse::<i64>()) {
            if workload::is_soak_key(key) {
                scrape.soak_objects.insert((kind, id));
            }
        }
    }
    scrape.objects = objects.len();
    Ok(scrape)
}

/// A sample's labels, names and unescaped values, in the order written.
type Labels<'a> = Vec<(&'a str, String)>;

/// `name{k="v",...} value` (labels optional) as its parts.
fn split_sample(line: &str) -> Option<(&str, Labels<'_>, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series, Vec::new(), value));
    };
    let mut labels = Vec::new();
    let mut rest = rest.strip_suffix('}')?;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut text = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => text.push(match chars.next()?.1 {
                    'n' => '\n',
                    c => c,
                }),
                (i, '"') => break i,
                (_, c) => text.push(c),
            }
        };
        labels.push((key.trim_start_matches(','), text));
        rest = &after[end + 1..];
    }
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_counts_series_objects_of_their_own_and_the_loads_objects() {
        let text = r#"# HELP ipctrace_objects objects known
# TYPE ipctrace_objects gauge
ipctrace_objects{type="sem"} 4
ipctrace_object_calls_total{ipc_ns="4026531839",type="sem",id="3",key="0x50a42001",op="semop"} 10
ipctrace_object_calls_total{ipc_ns="4026531839",type="sem",id="3",key="0x50a42001",op="semctl"} 1
ipctrace_sem_waiters{ipc_ns="4026531839",type="sem",id="9",key="0x00000000",semnum="0"} 0
ipctrace_object_info{ipc_ns="4026531839",type="msg",id="3",key="",creator_comm="a \"b\", c"} 1
ipctrace_object_calls_total{ipc_ns="",type="sem",id="other",key="",op="semop"} 99
ipctrace_events_total 12
ipctrace_lost_events_total 0
ipctrace_untracked_total 2
"#;
        let s = parse(text).unwrap();
        assert_eq!(s.series, 9);
        assert_eq!(s.objects, 3, "sem 3, sem 9, msg 3; not other");
        assert_eq!(
            s.soak_objects.into_iter().collect::<Vec<_>>(),
            [(Kind::Sem, 3)]
        );
        assert_eq!((s.own.events, s.own.lost, s.own.untracked), (12, 0, 2));
        assert!(parse("ipctrace_objects{type=\"sem\" 4").is_err());
    }
}
