//! What the person at `top` chose: the view, the sort, the filter, the selected row, pause,
//! help and the open detail; and what each key does to it. No terminal here: keys come in as
//! `Key`s, so tests press them.

use super::screen::{Row, RowId, Screen, Tab, Table};

/// The keys `top` knows, from whatever terminal library reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Enter,
    Esc,
    Tab,
    BackTab,
    Backspace,
    /// Ctrl-C: the terminal is raw, so it arrives as a key, not as SIGINT.
    Interrupt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub column: usize,
    pub descending: bool,
}

#[derive(Debug)]
pub struct App {
    pub tab: Tab,
    /// Per view; None until the person picks one (the view's own default).
    sort: [Option<Sort>; 4],
    /// The selected row of each view, by what it is about, so it stays put when rows move.
    selected: [Option<RowId>; 4],
    /// The first row shown of each view.
    offset: [usize; 4],
    /// Rows a page holds, as last drawn.
    pub page: usize,
    pub filter: String,
    pub editing_filter: bool,
    pub paused: bool,
    pub help: bool,
    /// The row whose detail is open.
    pub detail: Option<RowId>,
    pub quit: bool,
}

impl Default for App {
    fn default() -> Self {
        App {
            tab: Tab::Semaphores,
            sort: [None; 4],
            selected: [None; 4],
            offset: [0; 4],
            page: 10,
            filter: String::new(),
            editing_filter: false,
            paused: false,
            help: false,
            detail: None,
            quit: false,
        }
    }
}

impl App {
    pub fn sort(&self, table: &Table) -> Sort {
        self.sort[self.tab.index()].unwrap_or(Sort {
            column: table.default_sort.0,
            descending: table.default_sort.1,
        })
    }

    /// The rows of the current view the filter keeps, in the chosen order.
    pub fn visible<'a>(&self, screen: &'a Screen) -> Vec<&'a Row> {
        let table = screen.table(self.tab);
        let mut rows: Vec<&Row> = table
            .rows
            .iter()
            .filter(|r| r.matches(&self.filter))
            .collect();
        // Stable: ties keep the order rows were built in (semaphores: hottest first).
        let sort = self.sort(table);
        rows.sort_by(|a, b| {
            let o = a.sort[sort.column].compare(&b.sort[sort.column]);
            if sort.descending {
                o.reverse()
            } else {
                o
            }
        });
        rows
    }

    /// The index of the selected row among `rows` (the first when none is, or it went away).
    pub fn selected_index(&self, rows: &[&Row]) -> usize {
        self.selected[self.tab.index()]
            .and_then(|id| rows.iter().position(|r| r.id == id))
            .unwrap_or(0)
    }

    pub fn selected(&self, screen: &Screen) -> Option<RowId> {
        let rows = self.visible(screen);
        rows.get(self.selected_index(&rows)).map(|r| r.id)
    }

    /// The first row to draw so that the selected one is on a page of `height` rows.
    pub fn scroll(&mut self, selected: usize, height: usize) -> usize {
        let t = self.tab.index();
        let height = height.max(1);
        if selected < self.offset[t] {
            self.offset[t] = selected;
        } else if selected >= self.offset[t] + height {
            self.offset[t] = selected + 1 - height;
        }
        self.page = height;
        self.offset[t]
    }

    fn select(&mut self, screen: &Screen, index: impl Fn(usize, usize) -> usize) {
        let rows = self.visible(screen);
        if rows.is_empty() {
            return;
        }
        let now = self.selected_index(&rows);
        let to = index(now, rows.len()).min(rows.len() - 1);
        self.selected[self.tab.index()] = Some(rows[to].id);
    }

    fn switch(&mut self, tab: Tab) {
        self.tab = tab;
        self.detail = None;
    }

    /// Moves the sort to the next (`step` 1) or previous (-1) column.
    fn move_sort(&mut self, screen: &Screen, step: isize) {
        let table = screen.table(self.tab);
        let n = table.columns.len() as isize;
        let sort = self.sort(table);
        let column = (sort.column as isize + step).rem_euclid(n) as usize;
        // Numbers read best largest first, names A to Z.
        let descending = table
            .rows
            .first()
            .is_none_or(|r| matches!(r.sort[column], super::screen::SortKey::Num(_)));
        self.sort[self.tab.index()] = Some(Sort { column, descending });
    }

    /// Does what `key` asks. `screen` is what is shown (for moving and opening rows).
    pub fn handle(&mut self, key: Key, screen: &Screen) {
        if key == Key::Interrupt {
            self.quit = true;
            return;
        }
        if self.help {
            self.help = false;
            if key == Key::Char('q') {
                self.quit = true;
            }
            return;
        }
        if self.editing_filter {
            match key {
                Key::Enter => self.editing_filter = false,
                Key::Esc => {
                    self.editing_filter = false;
                    self.filter.clear();
                }
                Key::Backspace => {
                    self.filter.pop();
                }
                Key::Char(c) if !c.is_control() && self.filter.len() < 32 => self.filter.push(c),
                _ => {}
            }
            return;
        }
        let page = self.page.max(1);
        match key {
            Key::Char('q') => self.quit = true,
            // Esc closes what is open first, and quits when nothing is.
            Key::Esc if self.detail.is_some() => self.detail = None,
            Key::Esc if !self.filter.is_empty() => self.filter.clear(),
            Key::Esc => self.quit = true,
            Key::Up | Key::Char('k') => self.select(screen, |i, _| i.saturating_sub(1)),
            Key::Down | Key::Char('j') => self.select(screen, |i, _| i + 1),
            Key::PageUp => self.select(screen, |i, _| i.saturating_sub(page)),
            Key::PageDown => self.select(screen, |i, _| i + page),
            Key::Home | Key::Char('g') => self.select(screen, |_, _| 0),
            Key::End | Key::Char('G') => self.select(screen, |_, n| n - 1),
            Key::Tab => self.switch(Tab::ALL[(self.tab.index() + 1) % 4]),
            Key::BackTab => self.switch(Tab::ALL[(self.tab.index() + 3) % 4]),
            Key::Char(c @ '1'..='4') => self.switch(Tab::ALL[c as usize - '1' as usize]),
            Key::Char('>') | Key::Char('s') => self.move_sort(screen, 1),
            Key::Char('<') => self.move_sort(screen, -1),
            Key::Char('r') => {
                let sort = self.sort(screen.table(self.tab));
                self.sort[self.tab.index()] = Some(Sort {
                    descending: !sort.descending,
                    ..sort
                });
            }
            Key::Char('/') => {
                self.editing_filter = true;
                self.detail = None;
            }
            Key::Char('p') | Key::Char(' ') => self.paused = !self.paused,
            Key::Char('?') | Key::Char('h') => self.help = true,
            Key::Enter => {
                self.detail = match self.detail {
                    Some(_) => None,
                    None => self.selected(screen),
                }
            }
            _ => {}
        }
    }
}
