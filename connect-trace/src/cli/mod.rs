//! One module per subcommand, and `config` for reading options from a file.

pub mod check;
pub mod config;
pub mod explain;
pub mod notify;
pub mod otlp;
pub mod run;
pub mod top;
pub mod workloads;

/// Everything that needs privileges is done (programs attached, maps and
/// sockets open): drops the capabilities, before any thread of ours
/// starts, since threads inherit them.
pub(crate) fn drop_capabilities() {
    match connect_trace::kernel::privileges::drop_after_attach() {
        Ok(kept) if kept.is_empty() => tracing::debug!("dropped every capability"),
        Ok(kept) => tracing::debug!("dropped every capability but {kept:?}"),
        Err(error) => tracing::warn!("could not drop capabilities: {error}"),
    }
}
