//! What the live view shows, as one value: made by
//! [`super::Live::snapshot`] about once a second, served as JSON at the
//! daemon's `/live` (docs/operations.md describes it) and read back by
//! `connect-trace top --from`.

use serde::{Deserialize, Serialize};

use crate::{aggregate::window::Tally, delivery::Delivery};

/// Always the `type` of a snapshot.
pub const KIND: &str = "live";

/// The live aggregates at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveSnapshot {
    /// Always `"live"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it was made (RFC 3339).
    pub ts: String,
    /// The node name the daemon was given, if any.
    pub node: Option<String>,
    /// Seconds since the aggregates started.
    pub uptime_s: u64,
    /// The whole host's attempts and failures over the last 10 s, 1 min and
    /// 5 min (exact, second by second).
    pub rates: Windows,
    /// Since the aggregates started.
    pub total: Counts,
    /// The whole host's attempts and failures in each of the last seconds,
    /// oldest first, ending with the last whole second.
    pub history: History,
    /// Destinations (`addr:port`, `[v6]:port`, a unix path, `@name`), the
    /// most failures in the last minute first.
    pub destinations: Vec<Row>,
    /// Process names (comm).
    pub processes: Vec<Row>,
    /// Containers, by name (or short id while unnamed).
    pub containers: Vec<Row>,
    /// Kubernetes pods, as `namespace/name`.
    pub pods: Vec<Row>,
    /// Errors (errno names, `canceled`, `unknown`); their attempts are
    /// every attempt of the window, so their rate is the share of attempts
    /// that failed with that error.
    pub errors: Vec<Row>,
    /// The most recent failures, newest first, each the JSON record
    /// `connect-trace run` writes for it.
    pub recent_failures: Vec<serde_json::Value>,
    /// Keys per dimension kept in memory at most; beyond it the keys with
    /// the fewest recent failures are dropped.
    pub capacity: usize,
    /// Keys dropped so far to stay within `capacity`, per dimension.
    pub dropped: Dropped,
    /// What the tracer could not see or hand over so far, as the `stopped`
    /// record counts it; `null` when the counts could not be read.
    #[serde(default)]
    pub losses: Option<Losses>,
}

/// Attempts the figures may be missing, counted as the `stopped` record's
/// `delivery` counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Losses {
    /// Call records the kernel dropped (its ring buffer full).
    pub records_lost: u64,
    /// Handshake outcomes the kernel dropped (its ring buffer full).
    pub outcomes_lost: u64,
    /// Runs of the tracer's programs the kernel skipped.
    pub events_missed: u64,
}

impl From<&Delivery> for Losses {
    fn from(delivery: &Delivery) -> Self {
        Self {
            records_lost: delivery.records_lost,
            outcomes_lost: delivery.outcomes_lost,
            events_missed: delivery.events_missed,
        }
    }
}

/// Attempts, failures and their rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Attempts (repeats are not attempts).
    pub attempts: u64,
    /// Failed or canceled attempts.
    pub failures: u64,
    /// failures / attempts; 0 when there were none.
    pub failure_rate: f64,
}

impl From<Tally> for Counts {
    fn from(tally: Tally) -> Self {
        Self {
            attempts: tally.attempts,
            failures: tally.failures,
            failure_rate: tally.failure_rate(),
        }
    }
}

/// The three sliding windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Windows {
    /// The last 10 seconds.
    #[serde(rename = "10s")]
    pub last_10s: Counts,
    /// The last minute.
    #[serde(rename = "1m")]
    pub last_1m: Counts,
    /// The last 5 minutes.
    #[serde(rename = "5m")]
    pub last_5m: Counts,
}

/// Per-second counts, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Attempts in each second.
    pub attempts: Vec<u64>,
    /// Failures in each second.
    pub failures: Vec<u64>,
}

/// One key of a dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The key as text, as the summaries name it. Chosen by traced
    /// programs for processes and unix paths: any text, control characters
    /// included.
    pub key: String,
    /// Its attempts and failures over the last 10 s, 1 min and 5 min
    /// (minutes in ten-second steps, see docs/operations.md).
    #[serde(flatten)]
    pub windows: Windows,
    /// For an error row, the error itself; otherwise the error of the key's
    /// most recent failure (`null` if it has not failed).
    pub error: Option<String>,
    /// The catalog class of `error` (`refused`, `timeout`, ...).
    pub class: Option<String>,
    /// The errno of `error`, when it is one.
    pub errno: Option<i32>,
    /// Destinations: the server name the attempt was made for, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Processes: the process id last seen with this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Containers: the full container id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Containers: the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Processes: the container the last process seen with this name ran
    /// in, named as a container row's `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Processes and containers: the pod (`namespace/name`) the last
    /// process, or the container, ran in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// Keys dropped per dimension.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// Destinations.
    pub destinations: u64,
    /// Processes.
    pub processes: u64,
    /// Containers.
    pub containers: u64,
    /// Pods.
    pub pods: u64,
}
