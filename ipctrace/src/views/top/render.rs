//! Draws a `Screen` as the app shows it: a title line with the views, the alert line, the
//! table (or the detail, or help) and a line of keys. Columns take the width there is and the
//! least needed go first on a narrow terminal. Color only when allowed (NO_COLOR).

use super::app::App;
use super::screen::{Column, DetailLine, Row, Screen, Severity, Tab};
use crate::views::human_duration;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// How things look: with color, or (NO_COLOR) with bold and reverse video only.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// Color unless NO_COLOR is set to anything non-empty (no-color.org).
    pub fn from_env() -> Theme {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    fn severity(self, s: Severity) -> Style {
        match (s, self.color) {
            (Severity::Normal, _) => Style::default(),
            (Severity::Warn, true) => Style::default().fg(Color::Yellow),
            (Severity::Alert, true) => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            (_, false) => Style::default().add_modifier(Modifier::BOLD),
        }
    }

    fn bar(self) -> Style {
        if self.color {
            Style::default().fg(Color::Black).bg(Color::Cyan)
        } else {
            Style::default().add_modifier(Modifier::REVERSED)
        }
    }

    fn header(self) -> Style {
        let s = Style::default().add_modifier(Modifier::BOLD);
        if self.color {
            s.fg(Color::Black).bg(Color::Green)
        } else {
            s.add_modifier(Modifier::UNDERLINED)
        }
    }

    fn selected(self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
}

/// `s` cut to `width` characters, the last an ellipsis when cut, padded to `width`.
fn fit(s: &str, width: usize, right: bool) -> String {
    let n = s.chars().count();
    if n > width {
        let mut cut: String = s.chars().take(width.saturating_sub(1)).collect();
        if width > 0 {
            cut.push('…');
        }
        return cut;
    }
    if right {
        format!("{s:>width$}")
    } else {
        format!("{s:<width$}")
    }
}

/// Which columns fit in `width`, and how wide each is: every column first at its minimum (the
/// least needed dropped until they fit), then widened toward what its cells need.
pub fn layout_columns(
    columns: &[Column],
    rows: &[&Row],
    width: u16,
    sorted: usize,
) -> Vec<(usize, usize)> {
    let width = width as usize;
    let mut shown: Vec<usize> = (0..columns.len()).collect();
    let needed = |shown: &[usize]| -> usize {
        shown
            .iter()
            .map(|&i| columns[i].min as usize)
            .sum::<usize>()
            + shown.len().saturating_sub(1)
    };
    while needed(&shown) > width {
        let Some(worst) = shown
            .iter()
            .copied()
            .filter(|&i| columns[i].drop_order > 0)
            .max_by_key(|&i| columns[i].drop_order)
        else {
            break;
        };
        shown.retain(|&i| i != worst);
    }
    let want = |i: usize| {
        let c = &columns[i];
        let header = c.header.chars().count() + usize::from(i == sorted);
        let cells = rows
            .iter()
            .map(|r| r.cells[i].chars().count())
            .max()
            .unwrap_or(0);
        header.max(cells).clamp(c.min as usize, c.max as usize)
    };
    // A column that says nothing yet (every cell `?` or `-`: the model cannot tell) gives its
    // room to the others' text before any of it is cut.
    let says_nothing = |i: usize| {
        columns[i].drop_order > 0
            && !rows.is_empty()
            && rows
                .iter()
                .all(|r| matches!(r.cells[i].as_str(), "?" | "-" | ""))
    };
    let wanted = |shown: &[usize]| shown.iter().map(|&i| want(i)).sum::<usize>() + shown.len() - 1;
    while shown.len() > 1 && wanted(&shown) > width {
        let Some(quiet) = shown
            .iter()
            .copied()
            .filter(|&i| says_nothing(i))
            .max_by_key(|&i| columns[i].drop_order)
        else {
            break;
        };
        shown.retain(|&i| i != quiet);
    }
    let wants: Vec<usize> = shown.iter().map(|&i| want(i)).collect();
    let mut widths: Vec<usize> = shown.iter().map(|&i| columns[i].min as usize).collect();
    let mut spare = width.saturating_sub(needed(&shown));
    for (w, want) in widths.iter_mut().zip(&wants) {
        let more = (want - *w).min(spare);
        *w += more;
        spare -= more;
    }
    // What is left goes to the last column of text (the longest: it may use it all).
    let text = shown
        .iter()
        .rposition(|&i| !columns[i].right)
        .unwrap_or(widths.len().saturating_sub(1));
    if let Some(w) = widths.get_mut(text) {
        *w += spare;
    }
    shown.into_iter().zip(widths).collect()
}

fn row_text(cells: &[String], columns: &[Column], layout: &[(usize, usize)]) -> String {
    let parts: Vec<String> = layout
        .iter()
        .map(|&(i, w)| fit(&cells[i], w, columns[i].right))
        .collect();
    parts.join(" ")
}

fn title_line(
    app: &App,
    screen: &Screen,
    clock: &str,
    interval: &str,
    theme: Theme,
) -> Line<'static> {
    let mut spans = vec![Span::styled(
        " ipctrace top ",
        theme.bar().add_modifier(Modifier::BOLD),
    )];
    if app.paused {
        spans.push(Span::styled(
            " PAUSED ",
            theme
                .severity(Severity::Alert)
                .add_modifier(Modifier::REVERSED),
        ));
    }
    for tab in Tab::ALL {
        let label = format!(" {} {} ", tab.index() + 1, tab.title());
        let style = if tab == app.tab {
            theme.selected().add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        spans.push(Span::styled(label, style));
    }
    let mut right = format!(" {clock} every {interval}");
    if screen.events_per_sec > 0.0 {
        right.push_str(&format!(
            " {} ev/s",
            super::screen::rate_text(screen.events_per_sec)
        ));
    }
    spans.push(Span::raw(right));
    Line::from(spans)
}

fn alert_line(screen: &Screen, theme: Theme) -> Line<'static> {
    if screen.alerts.is_empty() {
        return Line::from(Span::raw(" no alerts"));
    }
    let worst = screen
        .alerts
        .iter()
        .map(|a| a.severity)
        .max()
        .unwrap_or_default();
    let text: Vec<&str> = screen.alerts.iter().map(|a| a.text.as_str()).collect();
    Line::from(Span::styled(
        format!(" ! {}", text.join(" | ")),
        theme.severity(worst),
    ))
}

fn footer_line(app: &App) -> Line<'static> {
    if app.editing_filter {
        return Line::from(format!(
            " filter (pid, comm, key or id; Enter keeps, Esc clears): /{}_",
            app.filter
        ));
    }
    let mut s = String::new();
    if !app.filter.is_empty() {
        s.push_str(&format!(" [/{}]", app.filter));
    }
    // The sort shows in the column headers (an arrow), so the line keeps to keys.
    let keys = if app.detail.is_some() {
        "  Enter/Esc:back q:quit"
    } else {
        "  q:quit ↑↓:move Tab:view s<>:sort /:filter p:pause Enter:detail ?:help"
    };
    s.push_str(keys);
    Line::from(s)
}

const HELP: &[(&str, &str)] = &[
    (
        "q, Ctrl-C",
        "quit (Esc: close the detail or filter, else quit)",
    ),
    (
        "↑ ↓, j k",
        "move the selection; PgUp PgDn, Home End (g G) by page and to the ends",
    ),
    (
        "Tab, 1-4",
        "switch view: 1 Semaphores 2 Objects 3 Queues 4 Processes",
    ),
    (
        "s, > <",
        "sort by the next / previous column; r reverses the order",
    ),
    (
        "/",
        "filter rows: a pid, an id, a key (0x hex or decimal) or part of a command name",
    ),
    ("Enter", "open or close the detail of the selected row"),
    (
        "p, space",
        "pause: the screen stays, tracing goes on and nothing is lost",
    ),
    ("?", "this help; any key closes it"),
];

const HELP_NOTES: &[&str] = &[
    "BLOCKED/s: time tasks spent asleep in the call per second of the last interval (several",
    "waiters can make it over 1s/s). WAITS/s: calls that really slept. P99 and the histogram:",
    "blocked waits since start. WAITING: tasks asleep on it now; LONGEST: the longest wait,",
    "done or in progress. STUCK: a queue full, or messages nobody received for a while.",
];

/// Draws everything. `clock` and `interval` are what the title line says.
pub fn draw(
    frame: &mut Frame,
    app: &mut App,
    screen: &Screen,
    clock: &str,
    interval: &str,
    theme: Theme,
) {
    let area = frame.area();
    if area.height < 4 || area.width < 20 {
        frame.render_widget(Paragraph::new("ipctrace top: terminal too small"), area);
        return;
    }
    let line = |y: u16| Rect::new(area.x, area.y + y, area.width, 1);
    frame.render_widget(
        Paragraph::new(title_line(app, screen, clock, interval, theme)),
        line(0),
    );
    frame.render_widget(Paragraph::new(alert_line(screen, theme)), line(1));
    frame.render_widget(
        Paragraph::new(footer_line(app)).style(theme.bar()),
        line(area.height - 1),
    );
    let body = Rect::new(area.x, area.y + 2, area.width, area.height - 3);
    if app.help {
        draw_help(frame, body);
    } else if let Some(detail) = screen.detail.as_ref().filter(|d| Some(d.id) == app.detail) {
        draw_detail(frame, body, detail, theme);
    } else {
        draw_table(frame, body, app, screen, theme);
    }
}

fn draw_table(frame: &mut Frame, area: Rect, app: &mut App, screen: &Screen, theme: Theme) {
    let table = screen.table(app.tab);
    let rows = app.visible(screen);
    let sort = app.sort(table);
    let layout = layout_columns(table.columns, &rows, area.width, sort.column);
    let headers: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i == sort.column {
                format!("{}{}", c.header, if sort.descending { "↓" } else { "↑" })
            } else {
                c.header.to_string()
            }
        })
        .collect();
    let mut lines = vec![Line::from(Span::styled(
        fit(
            &row_text(&headers, table.columns, &layout),
            area.width as usize,
            false,
        ),
        theme.header(),
    ))];
    let height = area.height.saturating_sub(1) as usize;
    let selected = app.selected_index(&rows);
    let offset = app.scroll(selected, height);
    if rows.is_empty() {
        let why = if app.filter.is_empty() {
            format!("no {} seen yet", app.tab.title().to_lowercase())
        } else {
            format!("nothing matches /{}", app.filter)
        };
        lines.push(Line::from(format!(" {why}")));
    }
    for (i, row) in rows.iter().enumerate().skip(offset).take(height) {
        let mut style = theme.severity(row.severity);
        if i == selected {
            style = style.patch(theme.selected());
        }
        let text = fit(
            &row_text(&row.cells, table.columns, &layout),
            area.width as usize,
            false,
        );
        lines.push(Line::from(Span::styled(text, style)));
    }
    if rows.len() > offset + height {
        // Say there is more below on the last line, rather than hide it.
        if let Some(last) = lines.last_mut() {
            let more = format!(" +{} more ", rows.len() - offset - height);
            let text: String = last.spans.iter().map(|s| s.content.as_ref()).collect();
            let keep = (area.width as usize).saturating_sub(more.chars().count());
            let style = last.spans.first().map(|s| s.style).unwrap_or_default();
            *last = Line::from(vec![
                Span::styled(fit(&text, keep, false), style),
                Span::styled(more, theme.bar()),
            ]);
        }
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn draw_detail(frame: &mut Frame, area: Rect, detail: &super::screen::Detail, theme: Theme) {
    let width = area.width as usize;
    let mut lines = vec![Line::from(Span::styled(
        fit(&format!(" {} ", detail.title), width, false),
        theme.header(),
    ))];
    for l in &detail.lines {
        lines.push(match l {
            DetailLine::Heading(h) => Line::from(Span::styled(
                h.clone(),
                Style::default().add_modifier(Modifier::BOLD),
            )),
            DetailLine::Text(t) => Line::from(t.clone()),
            DetailLine::Bar { label, count, max } => {
                let room = width.saturating_sub(label.chars().count() + 12).min(50);
                let n = ((*count as u128 * room as u128).div_ceil((*max).max(1) as u128) as usize)
                    .min(room);
                Line::from(vec![
                    Span::raw(format!("{label} {count:>8} ")),
                    Span::styled("█".repeat(n), theme.severity(Severity::Warn)),
                ])
            }
        });
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let mut lines = vec![Line::from(Span::styled(
        " Keys",
        Style::default().add_modifier(Modifier::BOLD),
    ))];
    for (keys, what) in HELP {
        lines.push(Line::from(format!(" {keys:<10} {what}")));
    }
    lines.push(Line::from(""));
    lines.extend(HELP_NOTES.iter().map(|n| Line::from(format!(" {n}"))));
    frame.render_widget(Paragraph::new(lines), area);
}

/// The refresh interval as the title line says it: 1s, 500ms.
pub fn interval_text(interval: std::time::Duration) -> String {
    let ns = interval.as_nanos() as u64;
    if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else {
        human_duration(ns)
    }
}
