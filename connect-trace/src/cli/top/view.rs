//! The view's own thread: keys in, frames out, from the newest snapshot.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow};
use ratatui::crossterm::terminal;
use tokio::sync::{Notify, watch};

use super::{
    keys::{self, Input},
    logs::Logs,
    model::{Action, Model, Update},
    render::{self, Notes, Theme},
    terminal::{self as screen, Screen},
};

/// How long the view waits for a key before it looks for new figures and
/// for the order to stop.
const KEY_WAIT: Duration = Duration::from_millis(100);

/// How long the view may take to end once told to. Only a terminal that
/// takes no output (flow control held, a frozen emulator) makes it wait;
/// then we leave without it.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// The running view.
pub struct ViewThread {
    handle: JoinHandle<Result<()>>,
    stop: Arc<AtomicBool>,
    ended: Arc<Ended>,
}

/// Whether the view ended, however it ended (a panic included: the
/// thread's guard marks it while unwinding), and a wake-up for the main
/// thread.
#[derive(Default)]
struct Ended {
    ended: AtomicBool,
    notify: Notify,
}

/// Marks the view ended when dropped.
struct EndedGuard(Arc<Ended>);

impl Drop for EndedGuard {
    fn drop(&mut self) {
        self.0.ended.store(true, Ordering::SeqCst);
        // notify_one keeps the wake-up for a waiter that comes later.
        self.0.notify.notify_one();
    }
}

impl ViewThread {
    /// Takes over the terminal and starts drawing `updates`.
    pub fn start(
        source: String,
        updates: watch::Receiver<Option<Update>>,
        logs: Logs,
    ) -> Result<Self> {
        let screen = Screen::enter().context("setting up the terminal")?;
        let stop = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(Ended::default());
        let handle = std::thread::Builder::new()
            .name("top-view".to_owned())
            .spawn({
                let stop = Arc::clone(&stop);
                let ended = EndedGuard(Arc::clone(&ended));
                move || {
                    let _ended = ended;
                    show(screen, Model::new(source), updates, &stop, &logs)
                }
            })
            .context("starting the view's thread")?;
        Ok(Self {
            handle,
            stop,
            ended,
        })
    }

    /// Waits until the view ends (`q`, the terminal gone, an error).
    pub async fn ended(&self) {
        while !self.ended.ended.load(Ordering::SeqCst) {
            self.ended.notify.notified().await;
        }
    }

    /// Ends the view, restores the terminal, and returns how the view
    /// fared. After a signal its errors do not matter (after SIGHUP there
    /// is no terminal left to fail on): see [`ViewThread::stop_quietly`].
    pub async fn stop(self) -> Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        if tokio::time::timeout(STOP_WAIT, self.ended()).await.is_err() {
            // Its thread ends with the process.
            return Err(anyhow!(
                "the terminal took no output for {STOP_WAIT:?}; leaving it as it is"
            ));
        }
        let result = self.handle.join();
        screen::restore();
        match result {
            Ok(result) => result,
            Err(_) => Err(anyhow!("the view failed; its message is above")),
        }
    }

    /// Ends the view and restores the terminal, ignoring the view's errors.
    pub async fn stop_quietly(self) {
        if let Err(error) = self.stop().await {
            tracing::debug!("the view ended with: {error:#}");
        }
    }
}

fn show(
    mut screen: Screen,
    mut model: Model,
    mut updates: watch::Receiver<Option<Update>>,
    stop: &AtomicBool,
    logs: &Logs,
) -> Result<()> {
    let theme = Theme::from_env();
    if let Some(update) = updates.borrow_and_update().clone() {
        model.update(update);
    }
    let mut dirty = true;
    let mut size = terminal::size().ok();
    while !stop.load(Ordering::SeqCst) {
        match updates.has_changed() {
            Ok(true) => {
                if let Some(update) = updates.borrow_and_update().clone() {
                    dirty |= model.update(update);
                }
            }
            Ok(false) => {}
            // The producer is gone: the main thread is stopping.
            Err(_) => return Ok(()),
        }
        let now = terminal::size().ok();
        if now != size {
            size = now;
            dirty = true;
        }
        if dirty {
            let notes = Notes {
                warning: logs.warning(),
            };
            match screen.draw(|frame| render::draw(frame, &model, theme, &notes)) {
                Ok(()) => {}
                // The terminal hung up: nobody is left to look.
                Err(error) if error.raw_os_error() == Some(libc::EIO) => {
                    tracing::info!("the terminal hung up (writing to it failed); top ends");
                    return Ok(());
                }
                Err(error) => return Err(error).context("drawing"),
            }
            dirty = false;
        }
        match keys::wait(KEY_WAIT).context("reading keys")? {
            Input::Keys(keys) => {
                for key in keys {
                    match model.handle(key) {
                        Action::Quit => return Ok(()),
                        Action::Redraw => dirty = true,
                        Action::Nothing => {}
                    }
                }
            }
            Input::Nothing => {}
            // Nobody is left to look: end as if asked to.
            Input::Gone => {
                tracing::info!("the terminal hung up (its input ended); top ends");
                return Ok(());
            }
        }
    }
    Ok(())
}
