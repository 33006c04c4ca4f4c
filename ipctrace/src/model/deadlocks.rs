//! Deadlocks: the wait-for graph across processes (a waiter points at the holders of the
//! semaphore it waits on) and its cycles, each found once, as the chain of who waits on what
//! and holds what. A process waiting on a semaphore it holds itself is a cycle of one.

use crate::decoder::Comm;
use std::collections::{BTreeMap, BTreeSet};

/// A semaphore as people name it: set id, IPC key, number in the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SemName {
    pub ns: u32,
    pub id: i32,
    pub key: i32,
    pub num: u16,
}

/// One process asleep on a semaphore, and who holds that semaphore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitFor {
    pub pid: u32,
    pub comm: Option<Comm>,
    pub waits: SemName,
    /// When the wait began (CLOCK_MONOTONIC, as the model dates it): one wait, look after look.
    pub since_ns: u64,
    /// (pid, known only as a guess) of each live holder.
    pub holders: Vec<(u32, bool)>,
}

/// One process of a cycle: it waits on `waits`, and holds `holds`, which the process before it
/// in the cycle waits on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlockLink {
    pub pid: u32,
    pub comm: Option<Comm>,
    pub waits: SemName,
    pub holds: SemName,
    /// When its wait began.
    pub since_ns: u64,
}

/// A cycle of the wait-for graph, starting at its lowest pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadlock {
    pub links: Vec<DeadlockLink>,
    /// Some link rests on a guessed (inferred) holder.
    pub possible: bool,
}

impl Deadlock {
    /// The cycle's identity: its processes, what each waits on and since when, in order from
    /// the lowest pid. The same processes waiting again, in new waits, are another cycle.
    pub fn id(&self) -> Vec<(u32, SemName, u64)> {
        self.links
            .iter()
            .map(|l| (l.pid, l.waits, l.since_ns))
            .collect()
    }
}

/// Which cycles were reported, so that each is reported once, when it has lasted two looks (and
/// again only if it comes back after it was gone). A deadlock lasts: the same waits, still
/// asleep. A cycle seen once can be two moments read apart (the waiters at one, the holdings a
/// little later), and processes that take turns on a semaphore they use as a counter can each
/// be seen holding one unit and waiting for another, at look after look, but in new waits.
#[derive(Debug, Default)]
pub struct ReportedDeadlocks {
    /// Cycles at the last look.
    seen: BTreeSet<Vec<(u32, SemName, u64)>>,
    /// Cycles reported and still there.
    open: BTreeSet<Vec<(u32, SemName, u64)>>,
}

impl ReportedDeadlocks {
    /// The cycles of `found` that were there at the last look too and are not reported yet.
    pub fn closed_since(&mut self, found: Vec<Deadlock>) -> Vec<Deadlock> {
        let now: BTreeSet<Vec<(u32, SemName, u64)>> = found.iter().map(Deadlock::id).collect();
        let new: Vec<Deadlock> = found
            .into_iter()
            .filter(|d| self.seen.contains(&d.id()) && !self.open.contains(&d.id()))
            .collect();
        self.open.extend(new.iter().map(Deadlock::id));
        self.open.retain(|id| now.contains(id));
        self.seen = now;
        new
    }
}

/// One step of a path through the graph: (holder reached, index of the wait followed, guessed).
type Step = (u32, usize, bool);

/// Past this many cycles, or processes in one, the search stops: a graph that big is not a
/// deadlock an SRE reads link by link.
const MAX_CYCLES: usize = 64;
const MAX_CYCLE_LEN: usize = 32;

/// Every cycle of the graph `waits` make, once each.
pub fn find_deadlocks(waits: &[WaitFor]) -> Vec<Deadlock> {
    // Edges: waiter -> holder, labelled with the semaphore waited on and whether guessed.
    let mut edges: BTreeMap<u32, Vec<Step>> = BTreeMap::new();
    for (i, w) in waits.iter().enumerate() {
        for &(holder, guessed) in &w.holders {
            edges.entry(w.pid).or_default().push((holder, i, guessed));
        }
    }
    let mut found = Vec::new();
    let mut seen: BTreeSet<Vec<u32>> = BTreeSet::new();
    for &start in edges.keys() {
        // Cycles through nodes above `start` only: each is found from its lowest pid, once.
        let mut path: Vec<Step> = Vec::new();
        walk(start, start, &edges, &mut path, &mut |cycle| {
            let pids: Vec<u32> = cycle.iter().map(|&(_, i, _)| waits[i].pid).collect();
            if found.len() >= MAX_CYCLES || !seen.insert(pids) {
                return;
            }
            let n = cycle.len();
            let links = (0..n)
                .map(|k| {
                    let w = &waits[cycle[k].1];
                    DeadlockLink {
                        pid: w.pid,
                        comm: w.comm,
                        waits: w.waits,
                        holds: waits[cycle[(k + n - 1) % n].1].waits,
                        since_ns: w.since_ns,
                    }
                })
                .collect();
            found.push(Deadlock {
                links,
                possible: cycle.iter().any(|&(_, _, guessed)| guessed),
            });
        });
    }
    found
}

fn walk(
    start: u32,
    at: u32,
    edges: &BTreeMap<u32, Vec<Step>>,
    path: &mut Vec<Step>,
    report: &mut dyn FnMut(&[Step]),
) {
    if path.len() >= MAX_CYCLE_LEN {
        return;
    }
    for &(next, wait, guessed) in edges.get(&at).into_iter().flatten() {
        if next == start {
            path.push((next, wait, guessed));
            report(path);
            path.pop();
        } else if next > start && !path.iter().any(|&(p, _, _)| p == next) {
            path.push((next, wait, guessed));
            walk(start, next, edges, path, report);
            path.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sem(id: i32, num: u16) -> SemName {
        SemName {
            ns: 1,
            id,
            key: 0x100 + id,
            num,
        }
    }

    fn wait(pid: u32, on: SemName, holders: &[u32]) -> WaitFor {
        WaitFor {
            pid,
            comm: Some(Comm::new(&format!("p{pid}"))),
            waits: on,
            since_ns: 0,
            holders: holders.iter().map(|&h| (h, false)).collect(),
        }
    }

    fn chain(d: &Deadlock) -> Vec<(u32, i32, i32)> {
        d.links
            .iter()
            .map(|l| (l.pid, l.waits.id, l.holds.id))
            .collect()
    }

    #[test]
    fn abba_is_one_cycle_with_the_right_chain() {
        // 20 holds set 1 and waits on set 2; 10 holds set 2 and waits on set 1.
        let waits = [wait(20, sem(2, 0), &[10]), wait(10, sem(1, 0), &[20])];
        let found = find_deadlocks(&waits);
        assert_eq!(found.len(), 1);
        assert_eq!(chain(&found[0]), [(10, 1, 2), (20, 2, 1)]);
        assert!(!found[0].possible);
    }

    #[test]
    fn a_cycle_of_three_among_bystanders_is_reported_once() {
        let waits = [
            wait(3, sem(1, 0), &[1]),
            wait(1, sem(2, 0), &[2]),
            wait(2, sem(3, 0), &[3]),
            // Waiters on members of the cycle are stuck too, but are no part of it.
            wait(7, sem(1, 0), &[1]),
            wait(8, sem(9, 0), &[7]),
        ];
        let found = find_deadlocks(&waits);
        assert_eq!(found.len(), 1);
        assert_eq!(chain(&found[0]), [(1, 2, 1), (2, 3, 2), (3, 1, 3)]);
    }

    #[test]
    fn waiting_on_what_one_holds_is_a_cycle_of_one() {
        let found = find_deadlocks(&[wait(5, sem(4, 1), &[5])]);
        assert_eq!(chain(&found[0]), [(5, 4, 4)]);
    }

    #[test]
    fn a_chain_that_ends_is_no_deadlock_and_guesses_make_it_possible() {
        assert!(find_deadlocks(&[wait(1, sem(1, 0), &[2]), wait(2, sem(2, 0), &[3])]).is_empty());
        let mut waits = vec![wait(1, sem(1, 0), &[2]), wait(2, sem(2, 0), &[1])];
        waits[1].holders = vec![(1, true)];
        let found = find_deadlocks(&waits);
        assert!(found[0].possible);
    }

    #[test]
    fn a_cycle_is_reported_once_it_lasted_two_looks_and_again_only_after_it_was_gone() {
        let waits = [wait(20, sem(2, 0), &[10]), wait(10, sem(1, 0), &[20])];
        let mut reported = ReportedDeadlocks::default();
        let mut look = |w: &[WaitFor]| reported.closed_since(find_deadlocks(w)).len();
        assert_eq!(look(&waits), 0, "seen once: maybe two moments read apart");
        assert_eq!(look(&waits), 1);
        assert_eq!(look(&waits), 0, "reported once");
        assert_eq!(look(&[]), 0);
        assert_eq!(look(&waits), 0);
        assert_eq!(look(&waits), 1, "back, and lasting");
        // Seen, gone, seen: never two looks in a row.
        assert_eq!(look(&[]), 0);
        assert_eq!(look(&waits), 0);
        assert_eq!(look(&[]), 0);
        assert_eq!(look(&waits), 0);
    }

    #[test]
    fn the_same_processes_in_new_waits_are_a_new_cycle() {
        // 5 holds a unit of a counter and waits for another, at two looks, in two waits.
        let mut reported = ReportedDeadlocks::default();
        let mut look = |since_ns: u64| {
            let mut w = wait(5, sem(4, 0), &[5]);
            w.since_ns = since_ns;
            reported.closed_since(find_deadlocks(&[w])).len()
        };
        assert_eq!(look(100), 0);
        assert_eq!(look(900), 0, "another wait: not lasting");
        assert_eq!(look(900), 1, "the same wait, two looks");
    }

    #[test]
    fn two_cycles_sharing_a_process_are_both_found() {
        // 1 <-> 2 and 1 <-> 3: a counting semaphore held by 2 and 3 that 1 waits on.
        let waits = [
            wait(1, sem(1, 0), &[2, 3]),
            wait(2, sem(2, 0), &[1]),
            wait(3, sem(2, 0), &[1]),
        ];
        let found = find_deadlocks(&waits);
        let chains: Vec<_> = found.iter().map(chain).collect();
        assert_eq!(
            chains,
            [vec![(1, 1, 2), (2, 2, 1)], vec![(1, 1, 2), (3, 2, 1)]]
        );
    }
}
