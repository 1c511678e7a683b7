//! Drawing the [`Model`] with ratatui: a title, the host's rates with
//! sparklines, the view tabs, the table of the chosen dimension, the most
//! recent failures, and a status line. Works from 80×24 up.

use connect_trace::live::{
    LiveSnapshot,
    snapshot::{Counts, Row},
};
use ratatui::{
    Frame,
    layout::{Alignment, Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span, Text},
    widgets::{
        Block, Borders, Cell, Clear, List, ListItem, ListState, Paragraph, Row as TableRow, Table,
        TableState, Wrap,
    },
};

use super::{
    model::{FailureLine, Measure, Model, Popup, SortColumn, View, Window},
    text::{count, fit_end, fit_middle, printable, rate},
};

/// The smallest terminal drawn in full.
const MIN_SIZE: (u16, u16) = (60, 16);

/// Colors unless `NO_COLOR` is set; emphasis (bold, reverse) either way.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    color: bool,
}

impl Theme {
    /// From the environment: <https://no-color.org>.
    pub fn from_env() -> Self {
        Self {
            color: std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty()),
        }
    }

    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    fn failures(self, failures: u64) -> Style {
        if failures > 0 {
            self.fg(Color::Red)
        } else {
            Style::new()
        }
    }

    fn rate(self, counts: &Counts) -> Style {
        match counts.failure_rate {
            rate if counts.attempts > 0 && rate >= 0.5 => {
                self.fg(Color::Red).add_modifier(Modifier::BOLD)
            }
            rate if counts.attempts > 0 && rate >= 0.05 => self.fg(Color::Yellow),
            _ => Style::new(),
        }
    }
}

/// What the user also needs to know: a warning from the log, the number of
/// the log lines kept.
#[derive(Debug, Default, Clone)]
pub struct Notes {
    /// The newest warning or error logged, if any.
    pub warning: Option<String>,
}

/// Draws everything.
pub fn draw(frame: &mut Frame<'_>, model: &Model, theme: Theme, notes: &Notes) {
    let area = frame.area();
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        let text = format!(
            "connect-trace top needs at least {}x{} (this is {}x{}); q quits",
            MIN_SIZE.0, MIN_SIZE.1, area.width, area.height
        );
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    let [title, rates, attempts, failures, tabs, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_title(frame, title, model, theme);
    let snapshot = model.snapshot();
    if let Some(snapshot) = snapshot {
        draw_rates(frame, rates, snapshot, theme);
        draw_sparkline(
            frame,
            attempts,
            "attempts/s",
            &snapshot.history.attempts,
            theme.fg(Color::Cyan),
        );
        draw_sparkline(
            frame,
            failures,
            "failures/s",
            &snapshot.history.failures,
            theme.fg(Color::Red),
        );
    } else {
        let waiting = model.problem.as_deref().map_or_else(
            || "waiting for the first figures…".to_owned(),
            |p| printable(p).into_owned(),
        );
        frame.render_widget(Paragraph::new(waiting), rates);
    }
    draw_tabs(frame, tabs, model.view);
    if model.view == View::Failures {
        draw_failures(frame, body, model, true, theme);
    } else {
        let [table, recent] =
            Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(body);
        draw_table(frame, table, model, theme);
        draw_failures(frame, recent, model, false, theme);
    }
    draw_footer(frame, footer, model, notes, theme);
    if let Some(popup) = &model.popup {
        draw_popup(frame, area, popup, model.popup_scroll);
    }
}

fn draw_title(frame: &mut Frame<'_>, area: Rect, model: &Model, theme: Theme) {
    let left = Line::from(vec![
        Span::styled(
            "connect-trace top",
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(" · "),
        Span::raw(printable(&model.source).into_owned()),
    ]);
    let mut right = Vec::new();
    if model.paused {
        right.push(Span::styled(
            " PAUSED (p resumes) ",
            theme
                .fg(Color::Yellow)
                .add_modifier(Modifier::REVERSED | Modifier::BOLD),
        ));
    }
    if let Some(snapshot) = model.snapshot() {
        let time = snapshot.ts.get(11..19).unwrap_or(&snapshot.ts);
        right.push(Span::raw(format!(" {} UTC ", printable(time))));
    }
    right.push(Span::raw("· ? help"));
    let right = Line::from(right);
    let right_width = u16::try_from(right.width()).unwrap_or(u16::MAX);
    let [left_area, right_area] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(right_width)]).areas(area);
    frame.render_widget(Paragraph::new(left), left_area);
    frame.render_widget(
        Paragraph::new(right).alignment(Alignment::Right),
        right_area,
    );
}

fn draw_rates(frame: &mut Frame<'_>, area: Rect, snapshot: &LiveSnapshot, theme: Theme) {
    let ten = &snapshot.rates.last_10s;
    let seconds = snapshot.uptime_s.saturating_add(1).min(10);
    let per_second = ten.attempts as f64 / seconds as f64;
    let mut spans = vec![
        Span::raw("attempts "),
        Span::styled(
            if per_second < 10.0 {
                format!("{per_second:.1}/s")
            } else {
                format!("{per_second:.0}/s")
            },
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw("  failed "),
        Span::styled(rate(ten), theme.rate(ten)),
        Span::raw(" (10 s)  1 m "),
        Span::styled(
            rate(&snapshot.rates.last_1m),
            theme.rate(&snapshot.rates.last_1m),
        ),
        Span::raw("  5 m "),
        Span::styled(
            rate(&snapshot.rates.last_5m),
            theme.rate(&snapshot.rates.last_5m),
        ),
        Span::raw(format!(
            "  total {} attempts, {} failed",
            count(snapshot.total.attempts),
            count(snapshot.total.failures)
        )),
    ];
    let losses = snapshot.losses.unwrap_or_default();
    let lost = losses.records_lost.saturating_add(losses.outcomes_lost);
    if lost > 0 {
        spans.push(Span::styled(
            format!("  lost {}", count(lost)),
            theme.fg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    if losses.events_missed > 0 {
        spans.push(Span::styled(
            format!("  missed {}", count(losses.events_missed)),
            theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_sparkline(frame: &mut Frame<'_>, area: Rect, label: &str, history: &[u64], style: Style) {
    let peak = history.iter().copied().max().unwrap_or(0);
    let peak_text = format!(" max {}", count(peak));
    let [label_area, chart, peak_area] = Layout::horizontal([
        Constraint::Length(11),
        Constraint::Min(1),
        Constraint::Length(u16::try_from(peak_text.len()).unwrap_or(10)),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(label.to_owned()), label_area);
    // The newest second at the right edge.
    let shown = history.len().min(usize::from(chart.width));
    let bars = bars(&history[history.len() - shown..], peak);
    frame.render_widget(
        Paragraph::new(Span::styled(bars, style)).alignment(Alignment::Right),
        chart,
    );
    frame.render_widget(Paragraph::new(peak_text), peak_area);
}

/// One bar per value, `▁` to `█` against `peak`. Any value above zero
/// gets at least `▁`: a few failures next to a burst must still show.
fn bars(values: &[u64], peak: u64) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    values
        .iter()
        .map(|&value| match value {
            0 => ' ',
            value => {
                let level = value.saturating_mul(7) / peak.max(1);
                LEVELS[usize::try_from(level).unwrap_or(7).min(7)]
            }
        })
        .collect()
}

fn draw_tabs(frame: &mut Frame<'_>, area: Rect, current: View) {
    let spans: Vec<Span<'_>> = View::ALL
        .iter()
        .enumerate()
        .map(|(index, view)| {
            let text = format!(" {} {} ", index + 1, view.title());
            if *view == current {
                Span::styled(
                    text,
                    Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD),
                )
            } else {
                Span::raw(text)
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The columns a table shows: every measure when the terminal is wide,
/// failures and rates only when narrow.
fn measures(width: u16) -> &'static [Measure] {
    if width >= 100 {
        &[Measure::Failures, Measure::Attempts, Measure::Rate]
    } else {
        &[Measure::Failures, Measure::Rate]
    }
}

const NUMBER_WIDTH: u16 = 5;
const ERROR_WIDTH: u16 = 13;
/// `▶ ` before the selected row.
const MARK_WIDTH: u16 = 2;

fn draw_table(frame: &mut Frame<'_>, area: Rect, model: &Model, theme: Theme) {
    let measures = measures(area.width);
    let numbers = u16::try_from(measures.len() * Window::ALL.len()).unwrap_or(9);
    let fixed = MARK_WIDTH + ERROR_WIDTH + numbers * NUMBER_WIDTH + numbers + 1;
    let key_width = area.width.saturating_sub(fixed).max(8);
    let sort = model.sort();
    let arrow = if model.descending() { "▼" } else { "▲" };
    let heading = |text: &str, column: SortColumn| {
        if column == sort {
            (
                format!("{text}{arrow}"),
                Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
            )
        } else {
            (text.to_owned(), Style::new().add_modifier(Modifier::BOLD))
        }
    };
    let (key_text, key_style) = heading(model.view.key_heading(), SortColumn::Key);
    let error_heading = if model.view == View::Errors {
        "CLASS"
    } else {
        "ERROR"
    };
    let mut header = vec![
        Cell::from(Text::from(vec![
            Line::raw(""),
            Line::styled(key_text, key_style),
        ])),
        Cell::from(Text::from(vec![
            Line::raw(""),
            Line::styled(error_heading, Style::new().add_modifier(Modifier::BOLD)),
        ])),
    ];
    for window in Window::ALL {
        for (index, measure) in measures.iter().enumerate() {
            let name = match measure {
                Measure::Failures => "FAIL",
                Measure::Attempts => "ATT",
                Measure::Rate => "RATE",
            };
            let (text, style) = heading(name, SortColumn::Count(*measure, window));
            let group = if index == 0 { window.label() } else { "" };
            header.push(Cell::from(
                Text::from(vec![Line::raw(group), Line::styled(text, style)])
                    .alignment(Alignment::Right),
            ));
        }
    }
    let rows = model.rows();
    // Only the rows that fit are built: a dimension may hold 256 keys.
    let visible = usize::from(area.height.saturating_sub(2)).max(1);
    let selected = model.selected(rows.len());
    let first = (selected + 1).saturating_sub(visible);
    let body: Vec<TableRow<'_>> = rows
        .iter()
        .skip(first)
        .take(visible)
        .map(|row| table_row(row, model.view, measures, key_width, theme))
        .collect();
    let mut widths = vec![
        Constraint::Length(key_width),
        Constraint::Length(ERROR_WIDTH),
    ];
    widths.extend(std::iter::repeat_n(
        Constraint::Length(NUMBER_WIDTH),
        usize::from(numbers),
    ));
    let empty = body.is_empty();
    let table = Table::new(body, widths)
        .header(TableRow::new(header).height(2))
        .column_spacing(1)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("▶ ");
    let mut state =
        TableState::default().with_selected(if empty { None } else { Some(selected - first) });
    frame.render_stateful_widget(table, area, &mut state);
    if empty && area.height > 3 {
        let message = if model.snapshot().is_none() {
            "waiting for the first figures…".to_owned()
        } else if model.filter.is_empty() {
            "nothing in the last 5 minutes".to_owned()
        } else {
            format!(
                "nothing matches the filter \"{}\" (Esc clears it)",
                printable(&model.filter)
            )
        };
        let line = Rect {
            y: area.y + 2,
            height: 1,
            ..area
        };
        frame.render_widget(Paragraph::new(message).alignment(Alignment::Center), line);
    }
}

fn table_row<'a>(
    row: &'a Row,
    view: View,
    measures: &[Measure],
    key_width: u16,
    theme: Theme,
) -> TableRow<'a> {
    let mut key = match (&row.server_name, row.pid) {
        (Some(name), _) => format!("{name} ({})", row.key),
        (None, Some(pid)) => format!("{} [{pid}]", row.key),
        (None, None) => row.key.clone(),
    };
    // Where a process (or a container) ran: its pod, which names it best,
    // or its container.
    if let Some(workload) = row.pod.as_ref().or(row.container.as_ref()) {
        key.push_str(" in ");
        key.push_str(workload);
    }
    let key = printable(&key);
    let key = fit_middle(&key, usize::from(key_width)).into_owned();
    let error = if view == View::Errors {
        &row.class
    } else {
        &row.error
    };
    let error = error.as_deref().map(printable).unwrap_or_default();
    let error = fit_end(&error, usize::from(ERROR_WIDTH)).into_owned();
    let mut cells = vec![
        Cell::from(key),
        Cell::from(Span::styled(
            error,
            theme.failures(u64::from(row.error.is_some())),
        )),
    ];
    for window in Window::ALL {
        let counts = window.of(&row.windows);
        for measure in measures {
            let (text, style) = match measure {
                Measure::Failures => (count(counts.failures), theme.failures(counts.failures)),
                Measure::Attempts => (count(counts.attempts), Style::new()),
                Measure::Rate => (rate(counts), theme.rate(counts)),
            };
            cells.push(Cell::from(
                Line::styled(text, style).alignment(Alignment::Right),
            ));
        }
    }
    TableRow::new(cells)
}

fn draw_failures(frame: &mut Frame<'_>, area: Rect, model: &Model, selectable: bool, theme: Theme) {
    let lines = model.failures();
    let [title, list] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    let kept = model
        .snapshot()
        .map_or(0, |snapshot| snapshot.recent_failures.len());
    let heading = if selectable {
        format!("RECENT FAILURES, newest first ({kept} kept; Enter shows the record, e explains)")
    } else {
        format!("RECENT FAILURES, newest first ({kept} kept; 6 shows them all)")
    };
    frame.render_widget(
        Paragraph::new(Span::styled(
            fit_end(&heading, usize::from(area.width)).into_owned(),
            Style::new().add_modifier(Modifier::BOLD),
        )),
        title,
    );
    let width = usize::from(
        list.width
            .saturating_sub(if selectable { MARK_WIDTH } else { 0 }),
    );
    let visible = usize::from(list.height).max(1);
    let selected = model.selected(lines.len());
    let first = if selectable {
        (selected + 1).saturating_sub(visible)
    } else {
        0
    };
    let items: Vec<ListItem<'_>> = lines
        .iter()
        .skip(first)
        .take(visible)
        .map(|line: &FailureLine<'_>| {
            ListItem::new(Span::styled(
                fit_end(line.text, width).into_owned(),
                theme.fg(Color::Red),
            ))
        })
        .collect();
    if selectable {
        let mut state = ListState::default().with_selected(if items.is_empty() {
            None
        } else {
            Some(selected - first)
        });
        let list_widget = List::new(items)
            .highlight_style(Style::new().add_modifier(Modifier::REVERSED))
            .highlight_symbol("▶ ");
        frame.render_stateful_widget(list_widget, list, &mut state);
    } else {
        frame.render_widget(List::new(items), list);
    }
}

fn draw_footer(frame: &mut Frame<'_>, area: Rect, model: &Model, notes: &Notes, theme: Theme) {
    let problem = model
        .problem
        .as_deref()
        .or(notes.warning.as_deref())
        .map(|text| printable(text).into_owned());
    let mut spans = Vec::new();
    if model.editing {
        spans.push(Span::styled(
            format!("filter: {}▏", printable(&model.filter)),
            Style::new().add_modifier(Modifier::REVERSED),
        ));
        spans.push(Span::raw("  Enter keeps it, Esc clears it"));
    } else {
        if !model.filter.is_empty() {
            spans.push(Span::styled(
                format!("filter: {}", printable(&model.filter)),
                Style::new().add_modifier(Modifier::REVERSED),
            ));
            spans.push(Span::raw("  "));
        }
        let arrow = if model.descending() { "▼" } else { "▲" };
        // A problem takes the place of the key hints (`?` lists the keys).
        let hints = if problem.is_some() {
            ""
        } else {
            "  s/S sort  / filter  p pause  e explain  q quit"
        };
        spans.push(Span::raw(format!(
            "sort: {} {arrow}{hints}",
            model.sort().describe()
        )));
    }
    let line = Line::from(spans);
    match problem {
        Some(problem) => {
            let used = u16::try_from(line.width()).unwrap_or(u16::MAX);
            let [left, right] =
                Layout::horizontal([Constraint::Length(used), Constraint::Min(0)]).areas(area);
            frame.render_widget(Paragraph::new(line), left);
            let room = usize::from(right.width.saturating_sub(2));
            frame.render_widget(
                Paragraph::new(Span::styled(
                    format!("  {}", fit_end(&problem, room)),
                    theme.fg(Color::Red).add_modifier(Modifier::BOLD),
                )),
                right,
            );
        }
        None => frame.render_widget(Paragraph::new(line), area),
    }
}

/// The keys, for `?`.
pub const HELP: &[(&str, &str)] = &[
    ("Tab → l / Shift-Tab ← h", "next / previous view"),
    ("1 … 6", "a view by its number"),
    ("↑ ↓ j k PgUp PgDn Home End", "select a row"),
    ("s / S", "sort by the next / previous column"),
    ("r", "reverse the order"),
    (
        "/",
        "filter by text (destination, process, container, pod, error): type, then Enter keeps it, Esc clears it",
    ),
    ("Esc", "clear the filter; close a pop-up"),
    ("p or Space", "pause: keep showing these figures"),
    (
        "e",
        "explain the selected row's error (as `connect-trace explain`)",
    ),
    (
        "Enter",
        "view 6: the failure's whole record; elsewhere: explain",
    ),
    ("?", "this help"),
    ("q, Ctrl-C", "quit"),
];

fn draw_popup(frame: &mut Frame<'_>, area: Rect, popup: &Popup, scroll: u16) {
    let (title, lines): (&str, Vec<Line<'_>>) = match popup {
        Popup::Help => {
            let mut lines: Vec<Line<'_>> = HELP
                .iter()
                .map(|(keys, what)| {
                    Line::from(vec![
                        Span::styled(
                            format!("{keys:<27}"),
                            Style::new().add_modifier(Modifier::BOLD),
                        ),
                        Span::raw(*what),
                    ])
                })
                .collect();
            lines.push(Line::raw(""));
            lines.push(Line::raw(
                "Windows: the last 10 s (exact), 1 m and 5 m (in ten-second steps). RATE is failures / attempts; an error's ATT is every attempt. ERROR is the key's latest failure.",
            ));
            ("keys (Esc closes, ↑ ↓ scroll)", lines)
        }
        Popup::Text { title, lines } => (
            title.as_str(),
            lines.iter().map(|line| Line::raw(line.as_str())).collect(),
        ),
    };
    let title = match popup {
        Popup::Help => title.to_owned(),
        Popup::Text { .. } => format!("{title} (Esc closes, ↑ ↓ scroll)"),
    };
    let width = area.width.saturating_sub(4).min(100);
    // Lines wrap inside the borders, at word boundaries: count with room
    // to spare for the words that move down.
    let inner = usize::from(width.saturating_sub(2)).max(1);
    let rows: usize = lines
        .iter()
        .map(|line| match line.width() {
            fits if fits <= inner => 1,
            long => long.div_ceil(inner.saturating_sub(10).max(1)),
        })
        .sum();
    let height = u16::try_from(rows + 2)
        .unwrap_or(u16::MAX)
        .min(area.height.saturating_sub(2));
    let rect = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, rect);
    // Scrolled no further than the last screenful.
    let scroll = scroll.min(
        u16::try_from(rows)
            .unwrap_or(u16::MAX)
            .saturating_sub(height.saturating_sub(2)),
    );
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" {} ", printable(&title)));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0)),
        rect,
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use connect_trace::live::snapshot::{Dropped, History, Losses, Windows};
    use ratatui::{Terminal, backend::TestBackend};
    use serde_json::json;

    use super::*;
    use crate::cli::top::model::Update;

    fn counts(attempts: u64, failures: u64) -> Counts {
        Counts {
            attempts,
            failures,
            failure_rate: failures as f64 / attempts.max(1) as f64,
        }
    }

    fn snapshot() -> LiveSnapshot {
        let row = |key: &str, failures: u64| Row {
            key: key.to_owned(),
            windows: Windows {
                last_10s: counts(failures, failures),
                last_1m: counts(failures * 6, failures * 6),
                last_5m: counts(failures * 30, failures * 30),
            },
            error: Some("ECONNREFUSED".to_owned()),
            class: Some("refused".to_owned()),
            errno: Some(111),
            server_name: None,
            pid: None,
            container_id: None,
            image: None,
            container: None,
            pod: None,
        };
        LiveSnapshot {
            kind: "live".to_owned(),
            ts: "2026-12-01T10:00:00.000Z".to_owned(),
            node: None,
            uptime_s: 100,
            rates: Windows {
                last_10s: counts(200, 100),
                last_1m: counts(1200, 600),
                last_5m: counts(6000, 3000),
            },
            total: counts(6000, 3000),
            history: History {
                attempts: (0..120).collect(),
                failures: (0..120).map(|n| n / 2).collect(),
            },
            destinations: vec![
                row("127.0.0.1:41234", 20),
                row(
                    &format!("/run/{}/very/long/unix/socket.sock", "x".repeat(80)),
                    3,
                ),
            ],
            processes: vec![
                Row {
                    pid: Some(4618),
                    ..row("\u{1b}]2;pwned\u{7}", 20)
                },
                Row {
                    pid: Some(77),
                    container: Some("cart".to_owned()),
                    pod: Some("shop/cart-0".to_owned()),
                    ..row("node", 2)
                },
            ],
            containers: vec![Row {
                pod: Some("shop/cart-0".to_owned()),
                ..row("cart", 2)
            }],
            pods: Vec::new(),
            errors: vec![row("ECONNREFUSED", 23)],
            recent_failures: vec![json!({"ts": "2026-12-01T10:00:00.123Z",
                "comm": "\u{1b}[2Jevil", "pid": 1, "uid": 0, "family": "inet",
                "addr": "127.0.0.1", "port": 41234, "outcome": "failed",
                "errno_name": "ECONNREFUSED", "final_errno": 111,
                "final_errno_name": "ECONNREFUSED", "final_errno_class": "refused",
                "latency_ns": 12_000})],
            capacity: 256,
            dropped: Dropped::default(),
            losses: Some(Losses {
                events_missed: 5,
                ..Losses::default()
            }),
        }
    }

    fn screen(model: &Model, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal
            .draw(|frame| draw(frame, model, Theme { color: true }, &Notes::default()))
            .unwrap();
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..height {
            for x in 0..width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    fn model() -> Model {
        let mut model = Model::new("this host".to_owned());
        model.update(Update {
            feed: Ok(Arc::new(snapshot())),
        });
        model
    }

    #[test]
    fn every_size_from_80x24_shows_the_failing_destination() {
        let model = model();
        for (width, height) in [(80, 24), (120, 40), (200, 60)] {
            let text = screen(&model, width, height);
            assert!(
                text.contains("127.0.0.1:41234"),
                "{width}x{height}:\n{text}"
            );
            assert!(text.contains("ECONNREFUSED"), "{width}x{height}:\n{text}");
            assert!(text.contains("1 Destinations"), "{text}");
            // A long path keeps its end.
            assert!(text.contains("socket.sock"), "{width}x{height}:\n{text}");
            if width < 200 {
                assert!(text.contains('…'), "{text}");
            }
        }
        let small = screen(&model, 40, 10);
        assert!(small.contains("needs at least"), "{small}");
    }

    #[test]
    fn containers_show_their_pod() {
        let mut model = model();
        model.view = View::Containers;
        let text = screen(&model, 80, 24);
        assert!(text.contains("cart in shop/cart-0 "), "{text}");
    }

    #[test]
    fn hostile_names_are_drawn_as_escapes() {
        let mut model = model();
        model.view = View::Processes;
        let text = screen(&model, 120, 40);
        assert!(text.contains("\\x1b]2;pwned\\x07 [4618]"), "{text}");
        // No records lost: not said; skipped program runs are.
        assert!(!text.contains("lost"), "{text}");
        assert!(text.contains("  missed 5"), "{text}");
        // Where a process ran: its pod names it best.
        assert!(text.contains("node [77] in shop/cart-0 "), "{text}");
        assert!(text.contains("\\x1b[2Jevil[1]"), "{text}");
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
    }

    /// What one frame costs with every dimension full (run with
    /// `--ignored --nocapture` in release to measure).
    #[test]
    #[ignore = "a measurement, not a check"]
    fn cost_of_a_frame() {
        let mut full = snapshot();
        let row = full.destinations[0].clone();
        full.destinations = (0..256)
            .map(|n| Row {
                key: format!("10.0.{}.{}:443", n / 256, n % 256),
                ..row.clone()
            })
            .collect();
        full.recent_failures = vec![full.recent_failures[0].clone(); 100];
        let mut model = Model::new("this host".to_owned());
        model.update(Update {
            feed: Ok(Arc::new(full)),
        });
        let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
        let frames = 200;
        let start = std::time::Instant::now();
        for _ in 0..frames {
            terminal
                .draw(|frame| draw(frame, &model, Theme { color: true }, &Notes::default()))
                .unwrap();
        }
        println!("{:?} per 120x40 frame", start.elapsed() / frames);
    }

    #[test]
    fn bars_show_every_second_with_attempts() {
        assert_eq!(bars(&[0, 1, 50, 100, 2000], 2000), " ▁▁▁█");
        assert_eq!(bars(&[0, 3, 7], 7), " ▄█");
        assert_eq!(bars(&[0, 0], 0), "  ");
    }

    #[test]
    fn pop_ups_draw_over_the_view() {
        let mut model = model();
        model.popup = Some(Popup::Help);
        let text = screen(&model, 80, 24);
        assert!(text.contains("keys (Esc closes"), "{text}");
        assert!(text.contains("reverse the order"), "{text}");
    }
}
