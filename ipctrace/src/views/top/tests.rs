//! Rendering tests: model states built from synthetic calls and kernel snapshots, refreshed into
//! a `Screen`, drawn on ratatui's TestBackend, with keys pressed on the app.

use super::app::{App, Key};
use super::render::{self, Theme};
use super::screen::{self, Models, RowId, Screen, Tab};
use crate::decoder::syscalls::{IpcKind, Op};
use crate::decoder::{Call, Comm, Event, ProcessChange, SemOp, Waker};
use crate::filter::Filter;
use crate::kernel_view::blocked::BlockedSemop;
use crate::kernel_view::ctl::SemValue;
use crate::kernel_view::snapshot::{KernelSnapshot, MsgTable, SemTable, ShmTable};
use crate::kernel_view::sysvipc::{MsgQueue, SemSet};
use crate::loader::KernelCounts;
use crate::model::activity::Activity;
use crate::model::objects::{ObjectKey, Objects};
use crate::model::waits::{GroupBy, Waits};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::collections::HashMap;

const S: u64 = 1_000_000_000;
/// The test's "now": 10 s after the calls began.
const NOW: u64 = 10 * S;
const HOT: i32 = 32775;
const COLD: i32 = 32776;
const QUEUE: i32 = 98304;
const SEGMENT: i32 = 65540;
const ORPHAN: i32 = 65541;

struct World {
    objects: Objects,
    waits: Waits,
    activity: Activity,
    counts: KernelCounts,
    users: HashMap<u32, String>,
}

fn semop(pid: u32, comm: &str, id: i32, num: u16, blocked_ns: u64, waker: u32, ts: u64) -> Call {
    let mut c = Call::synthetic(Op::Semtimedop, pid, comm, [id as u64, 0, 1, 0, 0, 0], 0, ts)
        .with_sops(&[SemOp {
            num,
            op: -1,
            flg: 0,
        }]);
    c.blocked_ns = blocked_ns;
    if blocked_ns > 0 {
        c.waker = Some(Waker {
            pid: waker,
            tid: waker,
            comm: Comm::new("poster"),
        });
    }
    c
}

fn sem_set(semid: i32, key: i32) -> SemSet {
    SemSet::owned_by_root(semid, key, 2)
}

fn value(value: i32, last_pid: i32, ncount: i32) -> SemValue {
    SemValue {
        value,
        last_pid,
        ncount,
        zcount: 0,
    }
}

/// A hot semaphore set (a worker blocked 20 times for 25 ms, released by a poster, and a
/// "stuck" waiter on sem 1 for 8 s), a cold one, a full queue, a segment attached by a parent
/// and two forked children, and a segment whose creator exited without attaching it.
fn world() -> World {
    let mut objects = Objects::new();
    let blocked = BlockedSemop {
        pid: 300,
        tid: 300,
        comm: "stuckwaiter".into(),
        semid: HOT,
        sops: vec![SemOp {
            num: 1,
            op: -1,
            flg: 0,
        }],
        entered_ns: None,
    };
    let snapshot = |taken_ns: u64| KernelSnapshot {
        shm: Some(ShmTable {
            taken_ns,
            ..Default::default()
        }),
        sem: Some(SemTable {
            taken_ns,
            sets: vec![
                (
                    sem_set(HOT, 0x5d00012a),
                    Some(vec![value(0, 100, 0), value(0, 0, 1)]),
                ),
                (
                    sem_set(COLD, 0x5d00012b),
                    Some(vec![value(1, 0, 0), value(1, 0, 0)]),
                ),
            ],
            blocked: vec![blocked.clone()],
        }),
        msg: Some(MsgTable {
            taken_ns,
            queues: vec![(
                MsgQueue {
                    key: 0x5d00012c,
                    msqid: QUEUE,
                    perms: 0o600,
                    cbytes: 2048,
                    qnum: 8,
                    lspid: 400,
                    lrpid: 0,
                    uid: 0,
                    gid: 0,
                    cuid: 0,
                    cgid: 0,
                    stime: 0,
                    rtime: 0,
                    ctime: 0,
                },
                Some(2048),
            )],
            msgmnb: Some(16384),
            ..Default::default()
        }),
        ..Default::default()
    };
    // The stuck waiter was first seen at 2 s.
    objects.reconcile(&snapshot(2 * S));
    let mut activity = Activity::new(S);
    // As top has it: the object model counts the calls, the waits keep what slept or failed.
    let mut waits =
        Waits::new(GroupBy::Semnum, vec![IpcKind::Sem, IpcKind::Msg]).counting_calls_elsewhere();
    let mut calls = vec![
        Call::synthetic(
            Op::Shmget,
            500,
            "shmparent",
            [0x5d00012d, 65536, 0o1600, 0, 0, 0],
            SEGMENT as i64,
            3 * S,
        ),
        Call::synthetic(
            Op::Shmat,
            500,
            "shmparent",
            [SEGMENT as u64, 0, 0, 0, 0, 0],
            0x7f00_0000_0000,
            3 * S,
        ),
        Call::synthetic(
            Op::Shmget,
            600,
            "maker",
            [0x5d00012e, 4096, 0o1600, 0, 0, 0],
            ORPHAN as i64,
            3 * S,
        ),
    ];
    for i in 0..20 {
        calls.push(semop(
            100,
            "worker",
            HOT,
            0,
            25_000_000,
            200,
            9 * S + i * 40_000_000,
        ));
        calls.push(semop(
            200,
            "poster",
            HOT,
            0,
            0,
            0,
            9 * S + i * 40_000_000 + 1,
        ));
    }
    calls.push(semop(100, "worker", COLD, 0, 0, 0, 9 * S));
    let mut rcv = Call::synthetic(
        Op::Msgrcv,
        401,
        "reader",
        [QUEUE as u64, 0, 64, 0, 0o4000, 0],
        -42,
        9 * S,
    );
    rcv.mtype = None;
    calls.push(rcv);
    let mut apply = |calls: &[Call], objects: &mut Objects, activity: &mut Activity| {
        for c in calls {
            let e = Event::Call(*c);
            objects.apply(&e);
            activity.apply(&e);
            waits.record(c);
        }
    };
    apply(&calls[..3], &mut objects, &mut activity);
    for (child, start) in [(501u32, 11), (502, 12)] {
        let fork = Event::Process(ProcessChange::Fork {
            ts_ns: 4 * S,
            parent: 500,
            child,
            child_start_ns: start,
            comm: Comm::new("shmchild"),
        });
        objects.apply(&fork);
        activity.apply(&fork);
    }
    let exit = Event::Process(ProcessChange::Exit {
        ts_ns: 4 * S,
        pid: 600,
        start_ns: 0,
    });
    objects.apply(&exit);
    activity.apply(&exit);
    activity.tick(8 * S, |_| true);
    // The last interval, 8 s to 10 s, holds the semops and the receive.
    apply(&calls[3..], &mut objects, &mut activity);
    activity.tick(NOW, |k| objects.get(k).is_some());
    World {
        objects,
        waits,
        activity,
        counts: KernelCounts::default(),
        users: HashMap::from([(0, "root".to_string())]),
    }
}

fn screen_of(w: &World, open: Option<RowId>) -> Screen {
    let filter = Filter::default();
    let models = Models {
        objects: &w.objects,
        waits: &w.waits,
        activity: &w.activity,
        counts: w.counts,
        filter: &filter,
        users: &w.users,
        alive: &|pid| pid != 600,
        stuck_ns: 5 * S,
        events_per_sec: 41.0,
        compat_processes: 0,
    };
    screen::build(&models, NOW, open)
}

/// The screen as text, one string per terminal line, trailing blanks cut.
fn draw(app: &mut App, screen: &Screen, width: u16, height: u16, theme: Theme) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|f| render::draw(f, app, screen, "12:00:00", "1s", theme))
        .unwrap();
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| {
            let line: String = (0..width)
                .map(|x| buffer[(x, y)].symbol().to_string())
                .collect();
            line.trim_end().to_string()
        })
        .collect()
}

fn text(app: &mut App, screen: &Screen) -> Vec<String> {
    draw(app, screen, 80, 24, Theme { color: false })
}

fn press(app: &mut App, screen: &Screen, keys: &[Key]) {
    for k in keys {
        app.handle(*k, screen);
    }
}

fn type_text(app: &mut App, screen: &Screen, s: &str) {
    for c in s.chars() {
        app.handle(Key::Char(c), screen);
    }
}

/// The table's data lines (below the column headers, above the footer).
fn data_rows(lines: &[String]) -> Vec<&String> {
    lines[3..lines.len() - 1]
        .iter()
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn semaphores_come_hottest_first_on_80x24() {
    let w = world();
    let screen = screen_of(&w, None);
    let mut app = App::default();
    let lines = text(&mut app, &screen);
    assert_eq!(lines.len(), 24);
    assert!(
        lines[0].contains("ipctrace top") && lines[0].contains("1 Semaphores"),
        "{lines:#?}"
    );
    assert!(lines[2].starts_with("KEY"), "{lines:#?}");
    for header in [
        "SEMID",
        "BLOCKED/s↓",
        "WAITS/s",
        "P99",
        "WAITING",
        "LONGEST",
        "TOP WAKER",
    ] {
        assert!(lines[2].contains(header), "{header} in {}", lines[2]);
    }
    let rows = data_rows(&lines);
    assert_eq!(rows.len(), 2, "{lines:#?}");
    // 20 waits of 25 ms in a 2 s interval: 250ms/s, 10 waits/s; the stuck waiter 8 s so far.
    let hot = rows[0];
    assert!(hot.starts_with("0x5d00012a 32775"), "{hot}");
    // The waker's name is cut to make room for HOLDERS, which says something now.
    for figure in ["250ms/s", " 10 ", "25.0ms", " 1 ", "8.00s", "poster(2"] {
        assert!(hot.contains(figure), "{figure} in {hot}");
    }
    assert!(rows[1].contains(&COLD.to_string()), "{}", rows[1]);
    assert!(
        lines[23].contains("s<>:sort") && lines[23].contains("?:help"),
        "{}",
        lines[23]
    );
    assert!(lines.iter().all(|l| l.chars().count() <= 80));
    // The cold set's worker took a unit and never gave it back (the traced ledger): its holder.
    assert!(lines[2].contains("HOLDERS"), "{}", lines[2]);
    assert!(rows[1].contains("worker(100"), "{}", rows[1]);
    let narrower = draw(&mut app, &screen, 74, 24, Theme { color: false });
    assert!(
        narrower.iter().all(|l| l.chars().count() <= 74),
        "{narrower:#?}"
    );
}

#[test]
fn every_column_sorts_both_ways() {
    let w = world();
    let screen = screen_of(&w, None);
    let mut app = App::default();
    press(&mut app, &screen, &[Key::Char('2')]);
    let ids = |app: &mut App| -> Vec<String> {
        data_rows(&text(app, &screen))
            .iter()
            .map(|l| l.split_whitespace().nth(2).unwrap().to_string())
            .collect()
    };
    // TYPE, A to Z, first: msg, sem, sem, shm, shm.
    let lines = text(&mut app, &screen);
    assert!(lines[2].contains("TYPE↑"), "{}", lines[2]);
    assert_eq!(ids(&mut app).len(), 5);
    // Two columns on: ID, largest first; then reversed.
    press(&mut app, &screen, &[Key::Char('>'), Key::Char('s')]);
    assert!(text(&mut app, &screen)[2].contains("ID↓"));
    let expected = [HOT, COLD, QUEUE, SEGMENT, ORPHAN];
    let mut descending: Vec<String> = expected.iter().map(|i| i.to_string()).collect();
    descending.sort_by_key(|s| std::cmp::Reverse(s.parse::<i64>().unwrap()));
    assert_eq!(ids(&mut app), descending);
    press(&mut app, &screen, &[Key::Char('r')]);
    descending.reverse();
    assert_eq!(ids(&mut app), descending);
    // `<` goes back to KEY; past the first column it wraps to the last (AGE).
    press(
        &mut app,
        &screen,
        &[Key::Char('<'), Key::Char('<'), Key::Char('<')],
    );
    assert!(text(&mut app, &screen)[2].contains("AGE↓"));
    // Processes by calls per second: the worker (21 calls in 2 s) before the poster (20),
    // then the reader (one failed msgrcv: an error every other second).
    press(&mut app, &screen, &[Key::Char('4')]);
    let rows: Vec<String> = data_rows(&text(&mut app, &screen))
        .into_iter()
        .cloned()
        .collect();
    assert!(
        rows[0].contains("worker") && rows[0].contains("250ms/s"),
        "{rows:#?}"
    );
    assert!(
        rows[1].contains("poster") && rows[1].contains(" 10 "),
        "{rows:#?}"
    );
    assert!(
        rows[2].contains("reader") && rows[2].contains("0.5    0.5"),
        "{rows:#?}"
    );
}

#[test]
fn enter_opens_the_detail_of_the_selected_row() {
    let w = world();
    let screen = screen_of(&w, None);
    let mut app = App::default();
    press(&mut app, &screen, &[Key::Enter]);
    let open = app.detail.expect("a detail is open");
    assert_eq!(
        open,
        RowId::Object(ObjectKey {
            ns: 0,
            kind: IpcKind::Sem,
            id: HOT
        })
    );
    let screen = screen_of(&w, app.detail);
    let lines = draw(&mut app, &screen, 100, 40, Theme { color: false });
    let all = lines.join("\n");
    assert!(all.contains("sem 32775"), "{all}");
    // Per semaphore: the value, the last pid, the waiter with how long it has waited.
    let sem1 = lines
        .iter()
        .find(|l| l.trim_start().starts_with("1 "))
        .expect(&all);
    assert!(sem1.contains("stuckwaiter(300) 8s"), "{sem1}");
    assert!(all.contains("since start: 40 calls, 20 blocked"), "{all}");
    assert!(all.contains("released by: poster(200) 20"), "{all}");
    // The 25 ms waits in one log2 bar, drawn.
    let bar = lines
        .iter()
        .find(|l| l.contains("16.8ms - 33.6ms"))
        .expect(&all);
    assert!(bar.contains("20") && bar.contains("█████"), "{bar}");
    assert!(
        all.contains("Last operations") && all.contains("semtimedop"),
        "{all}"
    );
    // Esc goes back to the table, Esc again quits.
    press(&mut app, &screen, &[Key::Esc]);
    assert!(app.detail.is_none() && !app.quit);
    press(&mut app, &screen, &[Key::Esc]);
    assert!(app.quit);
}

#[test]
fn a_set_whose_semops_never_slept_counts_them_in_its_detail() {
    let w = world();
    let mut app = App::default();
    app.detail = Some(RowId::Object(ObjectKey {
        ns: 0,
        kind: IpcKind::Sem,
        id: COLD,
    }));
    let screen = screen_of(&w, app.detail);
    let all = draw(&mut app, &screen, 100, 40, Theme { color: false }).join("\n");
    assert!(all.contains("sem 32776"), "{all}");
    assert!(all.contains("since start: 1 calls, 0 blocked"), "{all}");
    assert!(all.contains("no wait has blocked yet"), "{all}");
}

#[test]
fn moving_selects_the_next_row_and_the_detail_follows() {
    let w = world();
    let screen = screen_of(&w, None);
    let mut app = App::default();
    press(
        &mut app,
        &screen,
        &[
            Key::Char('3'),
            Key::Down,
            Key::Char('k'),
            Key::Char('j'),
            Key::Enter,
        ],
    );
    let screen = screen_of(&w, app.detail);
    let all = text(&mut app, &screen).join("\n");
    assert!(all.contains(&format!("msg {QUEUE}")), "{all}");
    assert!(
        all.contains("8 messages") && all.contains("2.0KiB/2.0KiB"),
        "{all}"
    );
    assert!(all.contains("STUCK: FULL"), "{all}");
}

#[test]
fn the_alert_line_names_stuck_waiters_full_queues_orphans_and_losses() {
    let mut w = world();
    w.counts.lost = 17;
    w.counts.lost_process = 2;
    let screen = screen_of(&w, None);
    let texts: Vec<&str> = screen.alerts.iter().map(|a| a.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "stuck: stuckwaiter(300) on sem 32775[1] 8s",
            "queue 98304 full (2.0KiB/2.0KiB)",
            "orphan: shm 65541 4.0KiB, unattached, creator 600 gone",
            "17 events lost (ring buffer full)",
            "2 process events lost",
        ]
    );
    let mut app = App::default();
    let lines = draw(&mut app, &screen, 200, 24, Theme { color: false });
    assert!(
        lines[1].starts_with(" ! stuck: stuckwaiter(300)"),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("| 17 events lost"), "{}", lines[1]);
    // Nothing to say: it says so.
    let quiet = World {
        objects: Objects::new(),
        waits: Waits::default(),
        activity: Activity::new(0),
        counts: KernelCounts::default(),
        users: HashMap::new(),
    };
    let lines = text(&mut app, &screen_of(&quiet, None));
    assert_eq!(lines[1], " no alerts");
    assert!(lines[3].contains("no semaphores seen yet"), "{lines:#?}");
}

#[test]
fn a_narrow_terminal_drops_the_least_needed_columns() {
    let w = world();
    let screen = screen_of(&w, None);
    let mut app = App::default();
    let lines = draw(&mut app, &screen, 50, 12, Theme { color: false });
    let header = &lines[2];
    assert!(
        !header.contains("KEY") && !header.contains("HOLDERS"),
        "{header}"
    );
    for kept in ["SEMID", "BLOCKED/s", "WAITS/s", "WAITING", "LONGEST"] {
        assert!(header.contains(kept), "{kept} in {header}");
    }
    assert!(lines.iter().all(|l| l.chars().count() <= 50));
    assert!(
        lines[3].contains("32775") && lines[3].contains("250ms/s"),
        "{lines:#?}"
    );
    // Too small to draw anything useful: one line, no panic.
    let lines = draw(&mut app, &screen, 15, 3, Theme { color: false });
    assert!(lines[0].starts_with("ipctrace top"));
}

#[test]
fn more_rows_than_fit_scroll_with_the_selection() {
    let w = world();
    let screen = screen_of(&w, None);
    let mut app = App::default();
    press(&mut app, &screen, &[Key::Char('4')]);
    // 7 processes; a header and 4 rows fit in 8 lines.
    let lines = draw(&mut app, &screen, 80, 8, Theme { color: false });
    assert!(lines[6].contains("+3 more"), "{lines:#?}");
    press(&mut app, &screen, &[Key::End]);
    let lines = draw(&mut app, &screen, 80, 8, Theme { color: false });
    let last = app.selected(&screen).unwrap();
    let RowId::Process(pid) = last else { panic!() };
    assert!(
        lines[6].contains(&pid.to_string()),
        "{pid} at the bottom: {lines:#?}"
    );
    press(&mut app, &screen, &[Key::PageUp, Key::Home]);
    let lines = draw(&mut app, &screen, 80, 8, Theme { color: false });
    assert!(lines[3].contains("worker"), "{lines:#?}");
}

#[test]
fn slash_filters_by_comm_pid_key_or_id() {
    let w = world();
    let screen = screen_of(&w, None);
    let mut app = App::default();
    press(&mut app, &screen, &[Key::Char('4'), Key::Char('/')]);
    type_text(&mut app, &screen, "SHMch");
    let lines = text(&mut app, &screen);
    assert!(lines[23].contains("/SHMch_"), "{}", lines[23]);
    let rows = data_rows(&lines);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert!(rows
        .iter()
        .all(|r| r.contains("shmchild") && r.contains("shm 65540 attached")));
    press(&mut app, &screen, &[Key::Enter]);
    assert!(text(&mut app, &screen)[23].contains("[/SHMch]"));
    // A pid; then, on Objects, a key in hex and an id.
    press(&mut app, &screen, &[Key::Esc, Key::Char('/')]);
    type_text(&mut app, &screen, "300");
    press(&mut app, &screen, &[Key::Enter]);
    let rows: Vec<String> = data_rows(&text(&mut app, &screen))
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].contains("stuckwaiter"), "{rows:#?}");
    press(
        &mut app,
        &screen,
        &[Key::Esc, Key::Char('2'), Key::Char('/')],
    );
    type_text(&mut app, &screen, "0x5d00012c");
    press(&mut app, &screen, &[Key::Enter]);
    let lines = text(&mut app, &screen);
    let rows = data_rows(&lines);
    assert!(rows.len() == 1 && rows[0].contains("98304"), "{rows:#?}");
    press(
        &mut app,
        &screen,
        &[Key::Char('/'), Key::Backspace, Key::Backspace],
    );
    for _ in 0..8 {
        press(&mut app, &screen, &[Key::Backspace]);
    }
    type_text(&mut app, &screen, "65541");
    let lines = text(&mut app, &screen);
    let rows = data_rows(&lines);
    assert!(
        rows.len() == 1 && rows[0].contains("maker(600)"),
        "{rows:#?}"
    );
    type_text(&mut app, &screen, "9");
    assert!(text(&mut app, &screen)[3].contains("nothing matches /655419"));
}

#[test]
fn keys_switch_views_pause_and_help() {
    let w = world();
    let screen = screen_of(&w, None);
    let mut app = App::default();
    for (key, tab) in [
        (Key::Tab, Tab::Objects),
        (Key::Tab, Tab::Queues),
        (Key::BackTab, Tab::Objects),
        (Key::Char('4'), Tab::Processes),
        (Key::Tab, Tab::Semaphores),
    ] {
        press(&mut app, &screen, &[key]);
        assert_eq!(app.tab, tab);
    }
    press(&mut app, &screen, &[Key::Char('p')]);
    assert!(app.paused && text(&mut app, &screen)[0].contains("PAUSED"));
    press(&mut app, &screen, &[Key::Char('p'), Key::Char('?')]);
    let lines = text(&mut app, &screen);
    assert!(
        !app.paused && lines.iter().any(|l| l.contains("Tab, 1-4")),
        "{lines:#?}"
    );
    // Any key closes help; q there quits, and so does Ctrl-C anywhere.
    press(&mut app, &screen, &[Key::Char('x')]);
    assert!(!app.help && !app.quit);
    press(&mut app, &screen, &[Key::Char('/'), Key::Interrupt]);
    assert!(app.quit);
}

#[test]
fn no_color_draws_without_colors() {
    let w = world();
    let screen = screen_of(&w, None);
    for color in [true, false] {
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
        let mut app = App::default();
        terminal
            .draw(|f| render::draw(f, &mut app, &screen, "12:00:00", "1s", Theme { color }))
            .unwrap();
        let colored =
            terminal.backend().buffer().content().iter().any(|c| {
                c.fg != ratatui::style::Color::Reset || c.bg != ratatui::style::Color::Reset
            });
        assert_eq!(colored, color);
    }
}

#[test]
fn details_of_a_segment_and_of_a_process() {
    let w = world();
    let segment = RowId::Object(ObjectKey {
        ns: 0,
        kind: IpcKind::Shm,
        id: SEGMENT,
    });
    let mut app = App::default();
    app.detail = Some(segment);
    let all = text(&mut app, &screen_of(&w, Some(segment))).join("\n");
    assert!(
        all.contains("shm 65540") && all.contains("size 64.0KiB  nattch 3"),
        "{all}"
    );
    assert!(all.contains("Attached (3 processes)"), "{all}");
    for who in [
        "shmparent(500) with 1 mappings",
        "shmchild(501)",
        "shmchild(502)",
    ] {
        assert!(all.contains(who), "{who}: {all}");
    }
    assert!(all.contains("shmget") && all.contains("shmat"), "{all}");
    // A process: its rates, what it waits on, its last calls.
    let worker = RowId::Process(100);
    app.detail = Some(worker);
    let all = text(&mut app, &screen_of(&w, Some(worker))).join("\n");
    assert!(all.contains("process 100 worker"), "{all}");
    assert!(
        all.contains("since start: 21 calls, 0 errors, 20 waits, blocked 500ms"),
        "{all}"
    );
    assert!(all.contains("semtimedop sem 32775"), "{all}");
    // A row that went away has no detail: the table shows again.
    let gone = RowId::Process(999);
    app.detail = Some(gone);
    let screen = screen_of(&w, Some(gone));
    assert!(screen.detail.is_none());
    assert!(text(&mut app, &screen)[2].starts_with("KEY"));
}

#[test]
fn ids_up_to_int_max_are_never_cut() {
    let w = world();
    let mut screen = screen_of(&w, None);
    // Ids grow with the kernel's sequence number up to 2^31 - 1.
    for table in &mut screen.tables {
        for row in &mut table.rows {
            let id = table.columns.iter().position(|c| c.header.ends_with("ID"));
            if let Some(i) = id {
                row.cells[i] = "2147483647".into();
            }
        }
    }
    let mut app = App::default();
    for tab in ['1', '2', '3'] {
        press(&mut app, &screen, &[Key::Char(tab)]);
        let lines = text(&mut app, &screen);
        assert!(lines[3].contains(" 2147483647 "), "{tab}: {lines:#?}");
    }
}
