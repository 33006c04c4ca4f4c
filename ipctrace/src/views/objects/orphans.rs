//! `objects --orphans`: segments nothing has mapped whose creator is gone, with their age, size
//! and owner: memory held until someone runs `ipcrm -m ID`.

use super::{ago, Table};
use crate::kernel_view::sysvipc::ShmSeg;
use crate::views::human_bytes;
use serde_json::json;
use std::collections::HashMap;

/// `now_s`: seconds since the epoch, as the kernel's ctime and dtime are.
pub fn render_orphans(
    orphans: &[ShmSeg],
    now_s: i64,
    users: &HashMap<u32, String>,
    json: bool,
) -> String {
    let age = |t: i64| (t > 0).then(|| now_s.saturating_sub(t).max(0) as u64);
    if json {
        return orphans
            .iter()
            .map(|s| {
                let line = json!({
                    "type": "shm", "id": s.shmid, "key": s.key, "size": s.size,
                    "owner": {"uid": s.uid, "gid": s.gid}, "mode": s.perms, "cpid": s.cpid,
                    "ctime": s.ctime, "dtime": (s.dtime > 0).then_some(s.dtime),
                    "age_s": age(s.ctime), "rss": s.rss, "swap": s.swap,
                });
                format!("{line}\n")
            })
            .collect();
    }
    let mut table = Table::new(&[
        ("KEY", 10, false),
        ("SHMID", 10, true),
        ("OWNER", 16, false),
        ("PERMS", 5, false),
        ("BYTES", 10, true),
        ("RSS", 10, true),
        ("CREATOR (GONE)", 14, true),
        ("AGE", 10, true),
        ("LAST DETACH", 16, true),
    ]);
    let secs = |s: u64| ago(s.saturating_mul(1_000_000_000));
    for s in orphans {
        table.push_text(vec![
            format!("{:#010x}", s.key as u32),
            s.shmid.to_string(),
            users
                .get(&s.uid)
                .cloned()
                .unwrap_or_else(|| s.uid.to_string()),
            format!("{:o}", s.perms & 0o777),
            human_bytes(s.size),
            human_bytes(s.rss),
            s.cpid.to_string(),
            age(s.ctime).map_or("?".into(), secs),
            age(s.dtime).map_or("never attached".into(), |a| format!("{} ago", secs(a))),
        ]);
    }
    let mut out = String::new();
    if orphans.is_empty() {
        out.push_str("no orphaned segments (every segment is mapped, or its creator runs)\n");
        return out;
    }
    table.render(&mut out, None);
    let total: u64 = orphans.iter().map(|s| s.size).sum();
    out.push_str(&format!(
        "{} orphaned segment(s), {} in all; remove one with: ipcrm -m SHMID\n",
        orphans.len(),
        human_bytes(total)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_size_owner_and_creator() {
        let seg = ShmSeg {
            key: 0x5d00_0100,
            shmid: 131092,
            perms: 0o600,
            size: 65536,
            cpid: 28539,
            uid: 0,
            ctime: 10_000,
            dtime: 13_000,
            ..Default::default()
        };
        let users = HashMap::from([(0, "root".to_string())]);
        let text = render_orphans(std::slice::from_ref(&seg), 17_800, &users, false);
        let row = text.lines().nth(1).unwrap();
        for cell in [
            "0x5d000100",
            "131092",
            "root",
            "600",
            "64.0KiB",
            "28539",
            "2h10m",
            "1h20m ago",
        ] {
            assert!(row.contains(cell), "{cell} in {row}");
        }
        assert!(text.contains("1 orphaned segment(s), 64.0KiB"), "{text}");
        let json: serde_json::Value =
            serde_json::from_str(&render_orphans(&[seg], 17_800, &users, true)).unwrap();
        assert_eq!(
            (json["id"].as_i64(), json["age_s"].as_i64()),
            (Some(131092), Some(7800))
        );
        assert!(render_orphans(&[], 0, &users, false).starts_with("no orphaned"));
    }
}
