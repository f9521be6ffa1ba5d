//! Logging: level from `--log-level`, `LOG_LEVEL` or `RUST_LOG` (info by default), format plain
//! or JSON, always on stderr so that commands' stdout stays machine-readable.

use tracing_subscriber::EnvFilter;

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

/// Where log lines take their time from: a virtual clock when it has a time (a simulation
/// running on the logging thread), else the host's.
#[derive(Debug, Clone, Copy)]
pub struct Clock(pub fn() -> Option<i64>);

impl tracing_subscriber::fmt::time::FormatTime for Clock {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match (self.0)() {
            Some(ms) => write!(
                w,
                "{}",
                crate::timefmt::format_time(wva_storage::Timestamp(ms))
            ),
            None => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}

/// The host's clock only.
fn wall() -> Option<i64> {
    None
}

/// Installs the global subscriber. `level` is a level (`debug`) or a full filter
/// (`wva=debug,kube=info`); when absent, `RUST_LOG` applies, else `info`.
pub fn init(level: Option<&str>, format: LogFormat) {
    init_with_clock(level, format, Clock(wall));
}

/// As [`init`], with log times from `clock` (`wva simulate`: the run's virtual time).
pub fn init_with_clock(level: Option<&str>, format: LogFormat, clock: Clock) {
    let filter = level
        .filter(|l| !l.trim().is_empty())
        .and_then(|l| EnvFilter::try_new(l.trim()).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // Colours only for a person at a terminal; log collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_timer(clock)
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
