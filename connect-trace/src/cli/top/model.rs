//! What the view shows and how keys change it, apart from drawing: the
//! view, the sort column, the filter, the selection, pause and pop-ups.
//! It works on the latest [`LiveSnapshot`] only, never on events.

use std::{cmp::Ordering, sync::Arc};

use connect_trace::{
    errno::catalog,
    live::{
        LiveSnapshot,
        snapshot::{Counts, Row, Windows},
    },
};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use serde_json::Value;

use super::text::{duration_ns, printable};

/// What the producer (the pipeline, or a daemon's `/live`) sends about
/// once a second.
#[derive(Debug, Clone)]
pub struct Update {
    /// The newest snapshot, or why there is none.
    pub feed: Result<Arc<LiveSnapshot>, String>,
}

/// One of the views, switched with Tab or a digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Destinations.
    Destinations,
    /// Process names.
    Processes,
    /// Containers.
    Containers,
    /// Pods.
    Pods,
    /// Errors.
    Errors,
    /// The recent failures, one line each.
    Failures,
}

impl View {
    /// In tab order.
    pub const ALL: [Self; 6] = [
        Self::Destinations,
        Self::Processes,
        Self::Containers,
        Self::Pods,
        Self::Errors,
        Self::Failures,
    ];

    /// Its tab's title.
    pub const fn title(self) -> &'static str {
        match self {
            Self::Destinations => "Destinations",
            Self::Processes => "Processes",
            Self::Containers => "Containers",
            Self::Pods => "Pods",
            Self::Errors => "Errors",
            Self::Failures => "Failures",
        }
    }

    /// The heading of its key column.
    pub const fn key_heading(self) -> &'static str {
        match self {
            Self::Destinations => "DESTINATION",
            Self::Processes => "PROCESS",
            Self::Containers => "CONTAINER",
            Self::Pods => "POD",
            Self::Errors => "ERROR",
            Self::Failures => "FAILURE",
        }
    }

    fn rows(self, snapshot: &LiveSnapshot) -> &[Row] {
        match self {
            Self::Destinations => &snapshot.destinations,
            Self::Processes => &snapshot.processes,
            Self::Containers => &snapshot.containers,
            Self::Pods => &snapshot.pods,
            Self::Errors => &snapshot.errors,
            Self::Failures => &[],
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|view| *view == self).unwrap_or(0)
    }
}

/// A sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last 10 s.
    TenSeconds,
    /// The last minute.
    Minute,
    /// The last 5 minutes.
    FiveMinutes,
}

impl Window {
    /// All three, shortest first.
    pub const ALL: [Self; 3] = [Self::TenSeconds, Self::Minute, Self::FiveMinutes];

    /// `10 s`, `1 m`, `5 m`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::TenSeconds => "10 s",
            Self::Minute => "1 m",
            Self::FiveMinutes => "5 m",
        }
    }

    /// This window's counts.
    pub const fn of(self, windows: &Windows) -> &Counts {
        match self {
            Self::TenSeconds => &windows.last_10s,
            Self::Minute => &windows.last_1m,
            Self::FiveMinutes => &windows.last_5m,
        }
    }
}

/// What a column counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Failures.
    Failures,
    /// Failure rate.
    Rate,
    /// Attempts.
    Attempts,
}

/// What the rows are sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortColumn {
    /// A count of a window.
    Count(Measure, Window),
    /// The key's text.
    Key,
}

impl SortColumn {
    /// Its name in the status line.
    pub fn describe(self) -> String {
        match self {
            Self::Count(measure, window) => {
                let what = match measure {
                    Measure::Failures => "failures",
                    Measure::Rate => "failure rate",
                    Measure::Attempts => "attempts",
                };
                format!("{what} {}", window.label())
            }
            Self::Key => "name".to_owned(),
        }
    }

    /// Counts sort most first; names from A.
    const fn descending_by_default(self) -> bool {
        matches!(self, Self::Count(..))
    }
}

/// The sort columns, in the order `s` steps through them.
pub const SORTS: [SortColumn; 10] = [
    SortColumn::Count(Measure::Failures, Window::TenSeconds),
    SortColumn::Count(Measure::Failures, Window::Minute),
    SortColumn::Count(Measure::Failures, Window::FiveMinutes),
    SortColumn::Count(Measure::Rate, Window::TenSeconds),
    SortColumn::Count(Measure::Rate, Window::Minute),
    SortColumn::Count(Measure::Rate, Window::FiveMinutes),
    SortColumn::Count(Measure::Attempts, Window::TenSeconds),
    SortColumn::Count(Measure::Attempts, Window::Minute),
    SortColumn::Count(Measure::Attempts, Window::FiveMinutes),
    SortColumn::Key,
];

/// A pop-up over the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Popup {
    /// The keys.
    Help,
    /// A text with a title: `explain` for an error, or a failure's record.
    Text {
        /// The title.
        title: String,
        /// Its lines, printable.
        lines: Vec<String>,
    },
}

/// What a key asks of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Draw again.
    Redraw,
    /// Nothing changed.
    Nothing,
    /// Leave.
    Quit,
}

/// One recent failure, ready to show.
#[derive(Debug, Clone)]
pub struct FailureLine<'a> {
    /// One line with the record's facts, printable.
    pub text: &'a str,
    /// The record itself.
    pub record: &'a Value,
}

/// The longest filter kept.
const MAX_FILTER: usize = 64;

/// How far PageUp and PageDown move.
const PAGE: usize = 10;

/// The state of the view.
#[derive(Debug)]
pub struct Model {
    /// Where the data comes from, for the title.
    pub source: String,
    snapshot: Option<Arc<LiveSnapshot>>,
    /// The snapshot's recent failures as lines, made once per snapshot.
    failure_lines: Vec<String>,
    /// Why the newest update has no snapshot (a daemon that does not
    /// answer), shown until one comes.
    pub problem: Option<String>,
    /// The view shown.
    pub view: View,
    sort: usize,
    descending: bool,
    /// The filter text; rows and failures that do not contain it
    /// (ignoring case) are hidden.
    pub filter: String,
    /// Whether keys are typed into the filter.
    pub editing: bool,
    selected: usize,
    /// Updates are ignored while paused.
    pub paused: bool,
    /// The pop-up shown, if any.
    pub popup: Option<Popup>,
    /// How many lines the pop-up is scrolled down.
    pub popup_scroll: u16,
}

impl Model {
    /// A view of `source`, sorted by failures in the last 10 s.
    pub fn new(source: String) -> Self {
        Self {
            source,
            snapshot: None,
            failure_lines: Vec::new(),
            problem: None,
            view: View::Destinations,
            sort: 0,
            descending: true,
            filter: String::new(),
            editing: false,
            selected: 0,
            paused: false,
            popup: None,
            popup_scroll: 0,
        }
    }

    /// Takes an update, unless paused. Returns whether to draw again.
    pub fn update(&mut self, update: Update) -> bool {
        match update.feed {
            // A problem is news even while paused: a daemon gone away ends
            // the view soon.
            Err(problem) => {
                self.problem = Some(problem);
                true
            }
            Ok(_) if self.paused => self.problem.take().is_some(),
            Ok(snapshot) => {
                self.failure_lines = snapshot.recent_failures.iter().map(failure_line).collect();
                self.snapshot = Some(snapshot);
                self.problem = None;
                true
            }
        }
    }

    /// The snapshot shown.
    pub fn snapshot(&self) -> Option<&LiveSnapshot> {
        self.snapshot.as_deref()
    }

    /// The sort column.
    pub const fn sort(&self) -> SortColumn {
        SORTS[self.sort]
    }

    /// Whether the sort is most first (counts) or from Z (names).
    pub const fn descending(&self) -> bool {
        self.descending
    }

    /// The rows of the current view that pass the filter, sorted.
    pub fn rows(&self) -> Vec<&Row> {
        let Some(snapshot) = self.snapshot() else {
            return Vec::new();
        };
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&Row> = self
            .view
            .rows(snapshot)
            .iter()
            .filter(|row| needle.is_empty() || row_text(row).to_lowercase().contains(&needle))
            .collect();
        let column = self.sort();
        let descending = self.descending;
        rows.sort_by(|a, b| {
            let primary = compare(a, b, column);
            let primary = if descending {
                primary.reverse()
            } else {
                primary
            };
            primary.then_with(|| tie_break(a, b))
        });
        rows
    }

    /// The recent failures that pass the filter, newest first.
    pub fn failures(&self) -> Vec<FailureLine<'_>> {
        let Some(snapshot) = self.snapshot() else {
            return Vec::new();
        };
        let needle = self.filter.to_lowercase();
        snapshot
            .recent_failures
            .iter()
            .zip(&self.failure_lines)
            .map(|(record, text)| FailureLine { text, record })
            .filter(|line| needle.is_empty() || line.text.to_lowercase().contains(&needle))
            .collect()
    }

    /// The selected line of the current view, kept within its `len`.
    pub fn selected(&self, len: usize) -> usize {
        self.selected.min(len.saturating_sub(1))
    }

    /// Takes one key.
    pub fn handle(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::Nothing;
        }
        let control = key.modifiers.contains(KeyModifiers::CONTROL);
        if control && matches!(key.code, KeyCode::Char('c' | 'C')) {
            return Action::Quit;
        }
        if self.editing {
            return self.edit_filter(key.code, control);
        }
        if self.popup.is_some() {
            match key.code {
                KeyCode::Char('q') => return Action::Quit,
                KeyCode::Esc | KeyCode::Enter | KeyCode::Char('?' | 'e') => self.popup = None,
                KeyCode::Down | KeyCode::Char('j') => {
                    self.popup_scroll = self.popup_scroll.saturating_add(1);
                }
                KeyCode::Up | KeyCode::Char('k') => {
                    self.popup_scroll = self.popup_scroll.saturating_sub(1);
                }
                KeyCode::PageDown => self.popup_scroll = self.popup_scroll.saturating_add(10),
                KeyCode::PageUp => self.popup_scroll = self.popup_scroll.saturating_sub(10),
                KeyCode::Home | KeyCode::Char('g') => self.popup_scroll = 0,
                _ => return Action::Nothing,
            }
            return Action::Redraw;
        }
        self.popup_scroll = 0;
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Tab | KeyCode::Right | KeyCode::Char('l') => self.switch(1),
            KeyCode::BackTab | KeyCode::Left | KeyCode::Char('h') => {
                self.switch(View::ALL.len() - 1);
            }
            KeyCode::Char(digit @ '1'..='6') => {
                let index = usize::from(digit as u8 - b'1');
                self.view = View::ALL[index];
                self.selected = 0;
            }
            KeyCode::Down | KeyCode::Char('j') => self.select(1, true),
            KeyCode::Up | KeyCode::Char('k') => self.select(1, false),
            KeyCode::PageDown => self.select(PAGE, true),
            KeyCode::PageUp => self.select(PAGE, false),
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.select(usize::MAX, true),
            KeyCode::Char('s') => self.step_sort(1),
            KeyCode::Char('S') => self.step_sort(SORTS.len() - 1),
            KeyCode::Char('r') => self.descending = !self.descending,
            KeyCode::Char('/') => self.editing = true,
            KeyCode::Esc => self.filter.clear(),
            KeyCode::Char('p' | ' ') => self.paused = !self.paused,
            KeyCode::Char('e') => self.popup = Some(self.explain_selected()),
            KeyCode::Enter => {
                self.popup = Some(match self.view {
                    View::Failures => self.record_selected(),
                    _ => self.explain_selected(),
                });
            }
            KeyCode::Char('?') => self.popup = Some(Popup::Help),
            _ => return Action::Nothing,
        }
        Action::Redraw
    }

    fn edit_filter(&mut self, code: KeyCode, control: bool) -> Action {
        match code {
            KeyCode::Enter => self.editing = false,
            KeyCode::Esc => {
                self.editing = false;
                self.filter.clear();
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char(c) if !control && !c.is_control() => {
                if self.filter.chars().count() < MAX_FILTER {
                    self.filter.push(c);
                }
            }
            _ => return Action::Nothing,
        }
        self.selected = 0;
        Action::Redraw
    }

    /// Moves the selection `by` lines down or up, within the lines shown.
    fn select(&mut self, by: usize, down: bool) {
        let len = if self.view == View::Failures {
            self.failures().len()
        } else {
            self.rows().len()
        };
        let at = self.selected(len);
        self.selected = if down {
            at.saturating_add(by).min(len.saturating_sub(1))
        } else {
            at.saturating_sub(by)
        };
    }

    fn switch(&mut self, by: usize) {
        self.view = View::ALL[(self.view.index() + by) % View::ALL.len()];
        self.selected = 0;
    }

    fn step_sort(&mut self, by: usize) {
        self.sort = (self.sort + by) % SORTS.len();
        self.descending = self.sort().descending_by_default();
    }

    /// `explain` for the error of the selected row or failure.
    fn explain_selected(&self) -> Popup {
        let (errno, name) = if self.view == View::Failures {
            let failures = self.failures();
            match failures.get(self.selected(failures.len())) {
                Some(line) => failure_error(line.record),
                None => (None, None),
            }
        } else {
            let rows = self.rows();
            match rows.get(self.selected(rows.len())) {
                Some(row) => (row.errno, row.error.clone()),
                None => (None, None),
            }
        };
        explain(errno, name.as_deref())
    }

    /// Every field of the selected failure's record.
    fn record_selected(&self) -> Popup {
        let failures = self.failures();
        let Some(line) = failures.get(self.selected(failures.len())) else {
            return Popup::Text {
                title: "failure".to_owned(),
                lines: vec!["no failure is selected".to_owned()],
            };
        };
        Popup::Text {
            title: "the failure's JSON record".to_owned(),
            lines: record_lines(line.record),
        }
    }
}

fn compare(a: &Row, b: &Row, column: SortColumn) -> Ordering {
    match column {
        SortColumn::Key => a.key.cmp(&b.key),
        SortColumn::Count(measure, window) => {
            let (a, b) = (window.of(&a.windows), window.of(&b.windows));
            match measure {
                Measure::Failures => a.failures.cmp(&b.failures),
                Measure::Attempts => a.attempts.cmp(&b.attempts),
                Measure::Rate => a
                    .failure_rate
                    .partial_cmp(&b.failure_rate)
                    .unwrap_or(Ordering::Equal),
            }
        }
    }
}

/// Among equals: the most failures now, then over longer windows, then by
/// name, so that the order holds still from one second to the next.
fn tie_break(a: &Row, b: &Row) -> Ordering {
    Window::ALL
        .iter()
        .map(|window| {
            window
                .of(&b.windows)
                .failures
                .cmp(&window.of(&a.windows).failures)
        })
        .find(|order| order.is_ne())
        .unwrap_or(Ordering::Equal)
        .then_with(|| a.key.cmp(&b.key))
}

/// Everything the filter looks at in a row.
fn row_text(row: &Row) -> String {
    let mut text = row.key.clone();
    for part in [
        &row.error,
        &row.class,
        &row.server_name,
        &row.image,
        &row.container_id,
        &row.container,
        &row.pod,
    ]
    .into_iter()
    .flatten()
    {
        text.push(' ');
        text.push_str(part);
    }
    text
}

/// The error number and name of a failure's record: how the attempt ended
/// (`final_errno`; `unknown` when the kernel did not tell).
fn failure_error(record: &Value) -> (Option<i32>, Option<String>) {
    let final_errno = record["final_errno"]
        .as_i64()
        .and_then(|n| i32::try_from(n).ok())
        .filter(|n| *n != 0);
    match record["outcome"].as_str() {
        Some("canceled") => (None, Some("canceled".to_owned())),
        _ => match final_errno {
            Some(errno) => (
                Some(errno),
                connect_trace::errno::name(errno).map(str::to_owned),
            ),
            None => (None, Some("unknown".to_owned())),
        },
    }
}

/// The text `connect-trace explain` prints, for an error.
fn explain(errno: Option<i32>, name: Option<&str>) -> Popup {
    let title = format!("explain {}", name.unwrap_or("?"));
    let lines = match (errno.and_then(catalog::lookup), name) {
        (Some(entry), _) => {
            let mut text = Vec::new();
            // Writing to a Vec cannot fail.
            let _ = crate::cli::explain::write_entry(&mut text, entry);
            String::from_utf8_lossy(&text)
                .lines()
                .map(|line| printable(line).into_owned())
                .collect()
        }
        (None, Some("canceled")) => vec![
            "canceled: the program gave up on the attempt (it closed the socket)".to_owned(),
            "before the handshake ended; docs/outcomes.md tells more.".to_owned(),
        ],
        (None, Some("unknown")) => vec![
            "unknown: the handshake failed and the kernel did not say why".to_owned(),
            "(without kernel BTF the error is not read; see `connect-trace check`).".to_owned(),
        ],
        (None, Some(name)) => vec![format!(
            "{} is not in the catalog of connect() errors (`connect-trace explain --all`).",
            printable(name)
        )],
        (None, None) => vec!["Nothing selected has failed.".to_owned()],
    };
    Popup::Text { title, lines }
}

/// The fields of a record, in the order the JSON record has them, one line
/// each.
fn record_lines(record: &Value) -> Vec<String> {
    const ORDER: &[&str] = &[
        "type",
        "ts",
        "node",
        "pid",
        "tid",
        "uid",
        "gid",
        "comm",
        "comm_hex",
        "cgroup_id",
        "cgroup",
        "container",
        "pod",
        "netns",
        "via",
        "fd",
        "family",
        "addr",
        "addr_hex",
        "port",
        "server_name",
        "scope_id",
        "addrlen",
        "addr_error",
        "ret",
        "errno",
        "errno_name",
        "errno_class",
        "latency_ns",
        "outcome",
        "final_errno",
        "final_errno_name",
        "final_errno_class",
        "handshake_ns",
        "repeat",
    ];
    let Some(fields) = record.as_object() else {
        return vec![printable(&record.to_string()).into_owned()];
    };
    let rest = fields
        .keys()
        .filter(|key| !ORDER.contains(&key.as_str()))
        .map(String::as_str);
    ORDER
        .iter()
        .copied()
        .chain(rest)
        .filter_map(|name| {
            let value = fields.get(name)?;
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            Some(format!("{name:<18} {}", printable(&text)))
        })
        .collect()
}

/// One line with the facts of a failure's record, printable: when, who,
/// where to, how it ended, in which workload, how it was made (when not
/// by a plain connect()), how the call returned, how long it took. The
/// facts that matter most come first: a narrow terminal cuts the end.
pub fn failure_line(record: &Value) -> String {
    let text = |field: &str| record[field].as_str().unwrap_or_default();
    let mut parts: Vec<String> = Vec::with_capacity(9);
    let ts = text("ts");
    parts.push(ts.get(11..23).unwrap_or(ts).to_owned());
    parts.push(format!("{}[{}]", text("comm"), record["pid"]));
    let destination = destination(record);
    parts.push(match record["server_name"].as_str() {
        Some(name) => format!("{name} ({destination})"),
        None => destination,
    });
    let outcome = text("outcome");
    let (_, error) = failure_error(record);
    let class = record["final_errno_class"]
        .as_str()
        .or_else(|| record["errno_class"].as_str());
    parts.push(match (outcome, error, class) {
        ("canceled", ..) => "canceled".to_owned(),
        (outcome, Some(error), Some(class)) => format!("{outcome} {error} ({class})"),
        (outcome, Some(error), None) => format!("{outcome} {error}"),
        (outcome, None, _) => outcome.to_owned(),
    });
    parts.extend(workload(record));
    match text("via") {
        "syscall" | "" => {}
        via => parts.push(format!("via {via}")),
    }
    // An attempt seen only by its handshake made no call to show.
    if let Some(name) = record["errno_name"].as_str() {
        let mut call = format!("call {name}");
        if let Some(ns) = record["latency_ns"].as_u64() {
            call.push(' ');
            call.push_str(&duration_ns(ns));
        }
        parts.push(call);
    }
    if let Some(ns) = record["handshake_ns"].as_u64() {
        parts.push(format!("handshake {}", duration_ns(ns)));
    }
    parts.push(format!("uid {}", record["uid"]));
    printable(&parts.join("  ")).into_owned()
}

/// The workload of a record, as the tables name it: `pod
/// namespace/name` with the container's name in it, or `container` and
/// its name (or the first 12 digits of its id).
fn workload(record: &Value) -> Option<String> {
    let container = &record["container"];
    let pod = &record["pod"];
    let container_name = pod["container"]
        .as_str()
        .or_else(|| container["name"].as_str());
    match pod["name"].as_str().or_else(|| pod["uid"].as_str()) {
        Some(name) => {
            let namespace = pod["namespace"].as_str().unwrap_or("?");
            Some(match container_name {
                Some(container) => format!("pod {namespace}/{name} ({container})"),
                None => format!("pod {namespace}/{name}"),
            })
        }
        None => container_name
            .or_else(|| container["id"].as_str().and_then(|id| id.get(..12)))
            .map(|name| format!("container {name}")),
    }
}

/// `addr:port`, `[v6]:port`, a unix path: as the summaries write it; for
/// an address not known, why (`address not seen`).
fn destination(record: &Value) -> String {
    let Some(addr) = record["addr"].as_str() else {
        return match record["addr_error"].as_str() {
            Some(problem) => format!("address {}", problem.replace('_', " ")),
            None => "?".to_owned(),
        };
    };
    match (record["family"].as_str(), record["port"].as_u64()) {
        (Some("inet6"), Some(port)) => format!("[{addr}]:{port}"),
        (_, Some(port)) => format!("{addr}:{port}"),
        (_, None) => addr.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use connect_trace::live::snapshot::{Dropped, History};
    use ratatui::crossterm::event::KeyEventState;
    use serde_json::json;

    use super::*;

    fn counts(attempts: u64, failures: u64) -> Counts {
        Counts {
            attempts,
            failures,
            failure_rate: if attempts == 0 {
                0.0
            } else {
                failures as f64 / attempts as f64
            },
        }
    }

    fn row(key: &str, ten: (u64, u64), minute: (u64, u64), five: (u64, u64)) -> Row {
        Row {
            key: key.to_owned(),
            windows: Windows {
                last_10s: counts(ten.0, ten.1),
                last_1m: counts(minute.0, minute.1),
                last_5m: counts(five.0, five.1),
            },
            error: Some("ECONNREFUSED".to_owned()),
            class: Some("refused".to_owned()),
            errno: Some(libc::ECONNREFUSED),
            server_name: None,
            pid: None,
            container_id: None,
            image: None,
            container: None,
            pod: None,
        }
    }

    fn snapshot(destinations: Vec<Row>, recent_failures: Vec<Value>) -> Arc<LiveSnapshot> {
        Arc::new(LiveSnapshot {
            kind: "live".to_owned(),
            ts: "2026-12-01T10:00:00.000Z".to_owned(),
            node: None,
            uptime_s: 60,
            rates: Windows::default(),
            total: Counts::default(),
            history: History::default(),
            destinations,
            processes: Vec::new(),
            containers: Vec::new(),
            pods: Vec::new(),
            errors: Vec::new(),
            recent_failures,
            capacity: 256,
            dropped: Dropped::default(),
            losses: None,
        })
    }

    fn model(destinations: Vec<Row>, recent: Vec<Value>) -> Model {
        let mut model = Model::new("test".to_owned());
        assert!(model.update(Update {
            feed: Ok(snapshot(destinations, recent)),
        }));
        model
    }

    fn press(model: &mut Model, code: KeyCode) -> Action {
        model.handle(KeyEvent {
            code,
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        })
    }

    fn keys(model: &Model) -> Vec<String> {
        model.rows().iter().map(|row| row.key.clone()).collect()
    }

    fn three() -> Vec<Row> {
        vec![
            // Failing a lot a while ago, little now.
            row("10.0.0.1:80", (10, 1), (100, 50), (500, 400)),
            // Failing now, every time.
            row("10.0.0.2:443", (5, 5), (5, 5), (5, 5)),
            // Busy and failing a little, now.
            row("10.0.0.3:53", (1000, 3), (6000, 20), (30000, 90)),
        ]
    }

    #[test]
    fn rows_rank_by_the_sort_column_and_s_steps_through_them() {
        let mut model = model(three(), Vec::new());
        assert_eq!(model.sort().describe(), "failures 10 s");
        assert_eq!(keys(&model), ["10.0.0.2:443", "10.0.0.3:53", "10.0.0.1:80"]);
        press(&mut model, KeyCode::Char('s'));
        assert_eq!(model.sort().describe(), "failures 1 m");
        assert_eq!(keys(&model), ["10.0.0.1:80", "10.0.0.3:53", "10.0.0.2:443"]);
        for _ in 0..2 {
            press(&mut model, KeyCode::Char('s'));
        }
        assert_eq!(model.sort().describe(), "failure rate 10 s");
        assert_eq!(keys(&model), ["10.0.0.2:443", "10.0.0.1:80", "10.0.0.3:53"]);
        press(&mut model, KeyCode::Char('r'));
        assert_eq!(keys(&model), ["10.0.0.3:53", "10.0.0.1:80", "10.0.0.2:443"]);
        press(&mut model, KeyCode::Char('S'));
        press(&mut model, KeyCode::Char('S'));
        press(&mut model, KeyCode::Char('S'));
        press(&mut model, KeyCode::Char('S'));
        assert_eq!(model.sort(), SortColumn::Key, "S steps back around");
        assert!(!model.descending());
        assert_eq!(keys(&model), ["10.0.0.1:80", "10.0.0.2:443", "10.0.0.3:53"]);
    }

    #[test]
    fn equal_rows_keep_a_stable_order() {
        let rows = vec![
            row("b", (1, 1), (1, 1), (9, 9)),
            row("a", (1, 1), (1, 1), (9, 9)),
            row("c", (1, 1), (1, 1), (10, 10)),
        ];
        let model = model(rows, Vec::new());
        assert_eq!(keys(&model), ["c", "a", "b"]);
    }

    #[test]
    fn the_filter_hides_what_does_not_contain_it() {
        let failure = json!({"ts": "2026-12-01T10:00:00.123456789Z", "comm": "curl", "pid": 7,
            "uid": 0, "family": "inet", "addr": "10.0.0.2", "port": 443, "outcome": "failed",
            "errno_name": "ECONNREFUSED", "final_errno": 111, "final_errno_name": "ECONNREFUSED",
            "final_errno_class": "refused", "latency_ns": 88_552});
        let mut model = model(three(), vec![failure]);
        press(&mut model, KeyCode::Char('/'));
        assert!(model.editing);
        for c in ":443".chars() {
            press(&mut model, KeyCode::Char(c));
        }
        assert_eq!(keys(&model), ["10.0.0.2:443"]);
        assert_eq!(model.failures().len(), 1);
        press(&mut model, KeyCode::Enter);
        assert!(!model.editing);
        assert_eq!(model.filter, ":443");
        // q quits once the filter is set, not while typing it.
        press(&mut model, KeyCode::Char('/'));
        assert_eq!(press(&mut model, KeyCode::Char('q')), Action::Redraw);
        assert!(keys(&model).is_empty());
        assert!(model.failures().is_empty());
        press(&mut model, KeyCode::Backspace);
        press(&mut model, KeyCode::Enter);
        // Errors match too, ignoring case.
        model.filter = "econnrefused".to_owned();
        assert_eq!(keys(&model).len(), 3);
        assert_eq!(model.failures().len(), 1);
        press(&mut model, KeyCode::Esc);
        assert!(model.filter.is_empty());
        assert_eq!(press(&mut model, KeyCode::Char('q')), Action::Quit);
    }

    #[test]
    fn pause_keeps_the_snapshot_shown() {
        let mut model = model(three(), Vec::new());
        press(&mut model, KeyCode::Char('p'));
        assert!(!model.update(Update {
            feed: Ok(snapshot(Vec::new(), Vec::new())),
        }));
        assert_eq!(keys(&model).len(), 3);
        press(&mut model, KeyCode::Char(' '));
        assert!(model.update(Update {
            feed: Ok(snapshot(Vec::new(), Vec::new())),
        }));
        assert!(keys(&model).is_empty());
        assert!(model.update(Update {
            feed: Err("connection refused".to_owned()),
        }));
        assert_eq!(model.problem.as_deref(), Some("connection refused"));
        assert!(model.snapshot().is_some(), "the last snapshot stays");
        // Paused, problems still show, and clear when figures come again.
        press(&mut model, KeyCode::Char('p'));
        assert!(model.update(Update {
            feed: Err("timed out".to_owned()),
        }));
        assert_eq!(model.problem.as_deref(), Some("timed out"));
        assert!(model.update(Update {
            feed: Ok(snapshot(three(), Vec::new())),
        }));
        assert_eq!(model.problem, None);
        assert!(keys(&model).is_empty(), "the figures stay paused");
    }

    #[test]
    fn views_switch_and_explain_opens_the_catalog() {
        let mut model = model(three(), Vec::new());
        press(&mut model, KeyCode::Tab);
        assert_eq!(model.view, View::Processes);
        press(&mut model, KeyCode::BackTab);
        press(&mut model, KeyCode::BackTab);
        assert_eq!(model.view, View::Failures);
        press(&mut model, KeyCode::Char('1'));
        assert_eq!(model.view, View::Destinations);
        press(&mut model, KeyCode::End);
        assert_eq!(model.selected(3), 2);
        press(&mut model, KeyCode::Up);
        assert_eq!(model.selected(3), 1, "up from the end moves at once");
        press(&mut model, KeyCode::PageDown);
        press(&mut model, KeyCode::Down);
        assert_eq!(model.selected(3), 2);
        press(&mut model, KeyCode::Char('e'));
        let Some(Popup::Text { title, lines }) = &model.popup else {
            panic!("no pop-up: {:?}", model.popup);
        };
        assert_eq!(title, "explain ECONNREFUSED");
        assert!(lines[0].starts_with("ECONNREFUSED (111)"), "{lines:?}");
        assert!(lines.iter().any(|line| line.contains("class:")));
        press(&mut model, KeyCode::Esc);
        assert!(model.popup.is_none());
        press(&mut model, KeyCode::Char('?'));
        assert_eq!(model.popup, Some(Popup::Help));
        assert_eq!(press(&mut model, KeyCode::Char('q')), Action::Quit);
    }

    #[test]
    fn a_failure_is_one_printable_line_with_the_record_s_facts() {
        let record = json!({"type": "connect", "ts": "2026-12-01T10:00:00.123456789Z",
            "comm": "\u{1b}]2;pwned\u{7}", "pid": 4618, "tid": 4618, "uid": 1000,
            "family": "inet6", "addr": "::1", "port": 9, "outcome": "failed",
            "errno": 115, "errno_name": "EINPROGRESS", "final_errno": 111,
            "final_errno_name": "ECONNREFUSED", "final_errno_class": "refused",
            "latency_ns": 88_552, "handshake_ns": 59_459,
            "container": {"id": "ab".repeat(32), "name": "web"},
            "pod": {"namespace": "shop", "name": "web-0"}});
        let line = failure_line(&record);
        assert_eq!(
            line,
            "10:00:00.123  \\x1b]2;pwned\\x07[4618]  [::1]:9  failed ECONNREFUSED (refused)  pod shop/web-0 (web)  call EINPROGRESS 88µs  handshake 59µs  uid 1000"
        );
        let mut model = model(Vec::new(), vec![record]);
        model.view = View::Failures;
        press(&mut model, KeyCode::Enter);
        let Some(Popup::Text { lines, .. }) = &model.popup else {
            panic!("no pop-up");
        };
        assert!(lines[0].starts_with("type"), "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|line| line.ends_with("\\x1b]2;pwned\\x07") && line.starts_with("comm")),
            "{lines:?}"
        );
        assert!(lines.iter().all(|line| !line.chars().any(char::is_control)));
        press(&mut model, KeyCode::Esc);
        press(&mut model, KeyCode::Char('e'));
        let Some(Popup::Text { title, .. }) = &model.popup else {
            panic!("no pop-up");
        };
        assert_eq!(title, "explain ECONNREFUSED");
    }

    #[test]
    fn failures_say_how_they_were_made_and_what_was_not_seen() {
        // A handshake of the kernel's own: no call, so no call part.
        let kernel = json!({"ts": "2026-12-01T10:00:00.123456789Z", "comm": "kworker/0:1",
            "pid": 12, "uid": 0, "via": "kernel", "family": "inet", "addr": "10.0.0.9",
            "port": 2049, "outcome": "failed", "errno": null, "errno_name": null,
            "latency_ns": null, "final_errno": 111, "final_errno_name": "ECONNREFUSED",
            "final_errno_class": "refused", "handshake_ns": 61_000,
            "container": {"id": "cd".repeat(32), "name": null}, "pod": null});
        assert_eq!(
            failure_line(&kernel),
            "10:00:00.123  kworker/0:1[12]  10.0.0.9:2049  failed ECONNREFUSED (refused)  container cdcdcdcdcdcd  via kernel  handshake 61µs  uid 0"
        );
        // An io_uring request whose start was not seen.
        let uring = json!({"ts": "2026-12-01T10:00:00.500000000Z", "comm": "app", "pid": 7,
            "uid": 0, "via": "io_uring", "family": null, "addr": null, "port": null,
            "addr_error": "not_seen", "outcome": "failed", "errno": 111,
            "errno_name": "ECONNREFUSED", "latency_ns": null, "final_errno": 111,
            "final_errno_name": "ECONNREFUSED", "final_errno_class": "refused",
            "pod": {"namespace": "shop", "name": "cart-0", "container": "cart"}});
        assert_eq!(
            failure_line(&uring),
            "10:00:00.500  app[7]  address not seen  failed ECONNREFUSED (refused)  pod shop/cart-0 (cart)  via io_uring  call ECONNREFUSED  uid 0"
        );
    }

    #[test]
    fn canceled_and_unknown_failures_are_explained_too() {
        let canceled = json!({"outcome": "canceled", "errno": 115, "final_errno": null});
        assert_eq!(
            failure_error(&canceled),
            (None, Some("canceled".to_owned()))
        );
        let Popup::Text { lines, .. } = explain(None, Some("canceled")) else {
            panic!()
        };
        assert!(lines[0].starts_with("canceled"));
        let unknown = json!({"outcome": "failed", "errno": 115, "final_errno": null});
        assert_eq!(failure_error(&unknown), (None, Some("unknown".to_owned())));
        let Popup::Text { lines, .. } = explain(None, None) else {
            panic!()
        };
        assert_eq!(lines, ["Nothing selected has failed."]);
    }
}
