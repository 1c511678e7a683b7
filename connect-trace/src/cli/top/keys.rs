//! Keys from the terminal, read here rather than by crossterm: crossterm's
//! reader loops forever, at full CPU, once the terminal hangs up (it reads
//! end-of-file again and again), and a hang-up without SIGHUP is what a
//! closed SSH session or a killed tmux can leave. Here end-of-file and
//! hang-up end the view.

use std::{io, time::Duration};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What waiting for keys gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// Keys, in order.
    Keys(Vec<KeyEvent>),
    /// Nothing within the wait.
    Nothing,
    /// The terminal is gone (hung up, closed).
    Gone,
}

/// Waits up to `timeout` for keys on stdin (a terminal in raw mode).
pub fn wait(timeout: Duration) -> io::Result<Input> {
    let mut poll = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, and its count.
    let ready = unsafe { libc::poll(&mut poll, 1, millis) };
    if ready < 0 {
        let error = io::Error::last_os_error();
        return match error.kind() {
            io::ErrorKind::Interrupted => Ok(Input::Nothing),
            _ => Err(error),
        };
    }
    if ready == 0 {
        return Ok(Input::Nothing);
    }
    if poll.revents & libc::POLLIN == 0 {
        // POLLHUP, POLLERR or POLLNVAL with nothing left to read.
        return Ok(Input::Gone);
    }
    let mut buffer = [0u8; 1024];
    // SAFETY: the buffer is valid for its length; poll said stdin is
    // readable, so this does not block.
    let read = unsafe { libc::read(libc::STDIN_FILENO, buffer.as_mut_ptr().cast(), buffer.len()) };
    match usize::try_from(read) {
        Ok(0) => Ok(Input::Gone),
        Ok(read) => Ok(Input::Keys(parse(&buffer[..read.min(buffer.len())]))),
        Err(_) => {
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock => Ok(Input::Nothing),
                // EIO: the terminal hung up.
                _ if error.raw_os_error() == Some(libc::EIO) => Ok(Input::Gone),
                _ => Err(error),
            }
        }
    }
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// The keys in what a terminal in raw mode sent: characters, control
/// keys, and the escape sequences of the keys the view uses (arrows, Home,
/// End, Page Up and Down, Shift-Tab). Unknown sequences are skipped whole.
pub fn parse(bytes: &[u8]) -> Vec<KeyEvent> {
    let mut keys = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let (used, found) = match rest {
            [0x1b] => (1, Some(key(KeyCode::Esc))),
            [0x1b, b'[', tail @ ..] => csi(tail),
            [0x1b, b'O', code, ..] => (3, ss3(*code)),
            // Alt with a key, or a lone Escape typed before other keys.
            [0x1b, ..] => (1, Some(key(KeyCode::Esc))),
            [b'\r' | b'\n', ..] => (1, Some(key(KeyCode::Enter))),
            [b'\t', ..] => (1, Some(key(KeyCode::Tab))),
            [0x7f | 0x08, ..] => (1, Some(key(KeyCode::Backspace))),
            [control @ 0x01..=0x1a, ..] => (
                1,
                Some(KeyEvent::new(
                    KeyCode::Char(char::from(control + b'a' - 1)),
                    KeyModifiers::CONTROL,
                )),
            ),
            _ => character(rest),
        };
        keys.extend(found);
        at += used.max(1);
    }
    keys
}

/// `ESC [` then parameters and one final byte.
fn csi(tail: &[u8]) -> (usize, Option<KeyEvent>) {
    let Some(end) = tail.iter().position(|byte| (0x40..=0x7e).contains(byte)) else {
        // Cut short: skip what there is.
        return (2 + tail.len(), None);
    };
    let params = &tail[..end];
    let code = match (tail[end], params) {
        (b'A', _) => Some(KeyCode::Up),
        (b'B', _) => Some(KeyCode::Down),
        (b'C', _) => Some(KeyCode::Right),
        (b'D', _) => Some(KeyCode::Left),
        (b'H', _) | (b'~', b"1" | b"7") => Some(KeyCode::Home),
        (b'F', _) | (b'~', b"4" | b"8") => Some(KeyCode::End),
        (b'~', b"5") => Some(KeyCode::PageUp),
        (b'~', b"6") => Some(KeyCode::PageDown),
        (b'~', b"3") => Some(KeyCode::Delete),
        (b'Z', _) => Some(KeyCode::BackTab),
        _ => None,
    };
    let event = code.map(|code| {
        if code == KeyCode::BackTab {
            KeyEvent::new(code, KeyModifiers::SHIFT)
        } else {
            key(code)
        }
    });
    (2 + end + 1, event)
}

/// `ESC O` and one byte (application cursor keys).
fn ss3(code: u8) -> Option<KeyEvent> {
    let code = match code {
        b'A' => KeyCode::Up,
        b'B' => KeyCode::Down,
        b'C' => KeyCode::Right,
        b'D' => KeyCode::Left,
        b'H' => KeyCode::Home,
        b'F' => KeyCode::End,
        _ => return None,
    };
    Some(key(code))
}

/// One UTF-8 character, or one byte skipped when it starts none.
fn character(rest: &[u8]) -> (usize, Option<KeyEvent>) {
    let len = match rest[0] {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => return (1, None),
    };
    match rest
        .get(..len)
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(|text| text.chars().next())
    {
        Some(c) if !c.is_control() => (len, Some(key(KeyCode::Char(c)))),
        _ => (1, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(bytes: &[u8]) -> Vec<(KeyCode, KeyModifiers)> {
        parse(bytes)
            .into_iter()
            .map(|event| (event.code, event.modifiers))
            .collect()
    }

    #[test]
    fn characters_and_control_keys() {
        let none = KeyModifiers::NONE;
        assert_eq!(
            codes(b"q/:443\r"),
            [
                (KeyCode::Char('q'), none),
                (KeyCode::Char('/'), none),
                (KeyCode::Char(':'), none),
                (KeyCode::Char('4'), none),
                (KeyCode::Char('4'), none),
                (KeyCode::Char('3'), none),
                (KeyCode::Enter, none),
            ]
        );
        assert_eq!(
            codes(b"\x03"),
            [(KeyCode::Char('c'), KeyModifiers::CONTROL)]
        );
        assert_eq!(
            codes(b"\t\x7f\x1b"),
            [
                (KeyCode::Tab, none),
                (KeyCode::Backspace, none),
                (KeyCode::Esc, none)
            ]
        );
        assert_eq!(codes("é日".as_bytes()).len(), 2);
        assert!(codes(b"\xff\xfe").is_empty(), "not UTF-8: skipped");
    }

    #[test]
    fn escape_sequences() {
        let none = KeyModifiers::NONE;
        assert_eq!(
            codes(b"\x1b[A\x1b[B\x1bOC\x1b[D\x1b[5~\x1b[6~\x1b[H\x1b[4~"),
            [
                (KeyCode::Up, none),
                (KeyCode::Down, none),
                (KeyCode::Right, none),
                (KeyCode::Left, none),
                (KeyCode::PageUp, none),
                (KeyCode::PageDown, none),
                (KeyCode::Home, none),
                (KeyCode::End, none),
            ]
        );
        assert_eq!(codes(b"\x1b[Z"), [(KeyCode::BackTab, KeyModifiers::SHIFT)]);
        // Unknown (F5, a mouse report) and cut-short sequences are skipped.
        assert_eq!(codes(b"\x1b[15~q"), [(KeyCode::Char('q'), none)]);
        assert!(codes(b"\x1b[1;5").is_empty());
    }
}
