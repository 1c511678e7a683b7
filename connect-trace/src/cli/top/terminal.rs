//! The terminal while the view is up: raw mode, the alternate screen and a
//! hidden cursor, and putting all three back on every way out (the view
//! ending, a signal, an error, a panic in any thread).

use std::{
    io::{self, IsTerminal as _, Stdout, Write as _},
    sync::{
        Mutex, Once, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Result, bail};
use ratatui::{
    Frame, Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor, execute,
        terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
    },
};

/// Whether the terminal is in the view's state now.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Held while a frame is written, so that a restore from another thread
/// (the panic hook) never lands in the middle of one.
static DRAWING: Mutex<()> = Mutex::new(());
static PANIC_HOOK: Once = Once::new();

/// Refuses to start without a terminal on stdin and stdout.
pub fn require_terminal() -> Result<()> {
    if !io::stdin().is_terminal() || !io::stdout().is_terminal() {
        bail!(
            "`connect-trace top` is a full-screen view and needs a terminal on stdin and stdout; without one, `connect-trace run` writes every attempt as JSON Lines (`run --summary-only` writes only the summaries)"
        );
    }
    Ok(())
}

/// The terminal in the view's state; dropping it restores the terminal.
pub struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    /// Enters raw mode and the alternate screen, and hides the cursor.
    pub fn enter() -> io::Result<Self> {
        install_panic_hook();
        terminal::enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let entered = execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)
            .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())));
        match entered {
            Ok(terminal) => Ok(Self { terminal }),
            Err(error) => {
                restore();
                Err(error)
            }
        }
    }

    /// Draws one frame, unless the terminal was restored meanwhile.
    pub fn draw(&mut self, render: impl FnOnce(&mut Frame<'_>)) -> io::Result<()> {
        let _drawing = DRAWING.lock().unwrap_or_else(PoisonError::into_inner);
        if !ACTIVE.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.terminal.draw(render).map(drop)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves the alternate screen, shows the cursor and ends raw mode, once;
/// errors are ignored (after SIGHUP there is no terminal left to fix).
pub fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut stdout = io::stdout();
    let _ = execute!(stdout, LeaveAlternateScreen, cursor::Show);
    let _ = stdout.flush();
    let _ = terminal::disable_raw_mode();
}

/// A panic anywhere restores the terminal first, so its message lands on
/// a usable screen. It waits for a frame being drawn to end, unless the
/// panic came from inside the drawing itself (then the lock is ours and
/// never frees: give up waiting after half a second).
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let mut drawing = None;
            for _ in 0..50 {
                match DRAWING.try_lock() {
                    Ok(guard) => drawing = Some(guard),
                    Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                        drawing = Some(poisoned.into_inner());
                    }
                    Err(std::sync::TryLockError::WouldBlock) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                }
                break;
            }
            restore();
            drop(drawing);
            previous(info);
        }));
    });
}
