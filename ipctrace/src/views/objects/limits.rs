//! `objects --limits`: each SysV IPC limit with what uses it now (`ipcs -l` and `ipcs -u` in
//! one table), a table for people or one JSON object per limit.

use super::Table;
use crate::model::limits::{LimitUse, Unit};
use crate::views::human_bytes;
use serde_json::json;

/// At or past this share of a limit, the row says so.
const NEAR: f64 = 0.9;

pub fn render_limits(uses: &[LimitUse], json: bool) -> String {
    if json {
        return uses
            .iter()
            .map(|u| {
                let unit = match u.unit {
                    Unit::Count => "count",
                    Unit::Bytes => "bytes",
                    Unit::Pages => "pages",
                };
                let closest = u
                    .closest
                    .map(|(kind, id)| json!({"type": kind.name(), "id": id}));
                let line = json!({
                    "limit": u.name, "value": u.limit, "used": u.used, "unit": unit,
                    "what": u.what, "closest": closest,
                });
                format!("{line}\n")
            })
            .collect();
    }
    let mut table = Table::new(&[
        ("LIMIT", 8, false),
        ("VALUE", 14, true),
        ("USED", 14, true),
        ("USE", 7, true),
        ("WHAT", 80, false),
    ]);
    for u in uses {
        let amount = |n: u64| match u.unit {
            Unit::Count => n.to_string(),
            Unit::Bytes => human_bytes(n),
            Unit::Pages => format!("{n}p"),
        };
        let share = u.fraction().map_or("-".to_string(), |f| {
            let pct = f * 100.0;
            if pct > 0.0 && pct < 0.1 {
                "<0.1%".to_string()
            } else {
                format!("{pct:.1}%")
            }
        });
        let mut what = u.what.to_string();
        if let Some((kind, id)) = u.closest {
            what.push_str(&format!(" (most: {kind} {id})"));
        }
        if u.used.is_none() {
            what.push_str(" (per call: not in the tables)");
        }
        if u.fraction().is_some_and(|f| f >= NEAR) {
            what.push_str(" NEAR THE LIMIT");
        }
        table.push_text(vec![
            u.name.to_string(),
            amount(u.limit),
            u.used.map_or("-".to_string(), amount),
            share,
            what,
        ]);
    }
    let mut out = String::new();
    table.render(&mut out, None);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::syscalls::IpcKind;

    fn limit(name: &'static str, limit: u64, used: Option<u64>, unit: Unit) -> LimitUse {
        LimitUse {
            name,
            what: "things",
            limit,
            used,
            unit,
            closest: None,
        }
    }

    #[test]
    fn a_row_per_limit_with_its_share() {
        let mut sets = limit("SEMMNI", 128, Some(120), Unit::Count);
        sets.closest = Some((IpcKind::Sem, 7));
        let uses = [
            sets,
            limit("SEMOPM", 500, None, Unit::Count),
            limit("SHMMAX", 1 << 20, Some(4096), Unit::Bytes),
        ];
        let text = render_limits(&uses, false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("LIMIT"), "{text}");
        assert!(
            lines[1].contains("128") && lines[1].contains("93.8%"),
            "{text}"
        );
        assert!(lines[1].contains("NEAR THE LIMIT") && lines[1].contains("sem 7"));
        assert!(lines[2].contains("per call"), "{text}");
        assert!(
            lines[3].contains("1.0MiB") && lines[3].contains("0.4%"),
            "{text}"
        );
        let json = render_limits(&uses, true);
        let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
        assert_eq!(first["limit"], "SEMMNI");
        assert_eq!(first["used"], 120);
        assert_eq!(first["closest"]["id"], 7);
        let second: serde_json::Value = serde_json::from_str(json.lines().nth(1).unwrap()).unwrap();
        assert!(second["used"].is_null());
    }
}
