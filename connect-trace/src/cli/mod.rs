//! One module per subcommand, and `config` for reading options from a file.

pub mod check;
pub mod config;
pub mod explain;
pub mod notify;
pub mod otlp;
pub mod run;
pub mod top;
