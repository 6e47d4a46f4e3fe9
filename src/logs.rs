//! How the process logs: tracing's lines, formatted as text or JSON, through the
//! drop-and-count sink of `markaz_node::logging` to stderr or a size-rotated file.
//!
//! - Colours only on a terminal: a pipe, a file or the journal get plain text.
//! - Under systemd (`JOURNAL_STREAM` names our stderr) each line starts with its syslog
//!   priority, `<3>` error … `<7>` debug, which journald takes as the entry's level
//!   (`journalctl -p warning` works) and strips; the journal stamps the time itself.

use std::io::IsTerminal;
use std::path::PathBuf;

use markaz_config::LogFormat;
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Where and how the process logs.
pub struct LogOptions {
    pub format: LogFormat,
    /// A tracing filter; `RUST_LOG` overrides it.
    pub filter: String,
    /// A file instead of stderr, rotated at `file_max_bytes`, keeping `file_keep` old ones.
    pub file: Option<PathBuf>,
    pub file_max_bytes: u64,
    pub file_keep: u32,
}

impl LogOptions {
    /// Stderr, `format`, `filter`.
    pub fn stderr(format: LogFormat, filter: &str) -> Self {
        Self {
            format,
            filter: filter.to_string(),
            file: None,
            file_max_bytes: 0,
            file_keep: 0,
        }
    }

    /// From a `[logging]` table, with the command line's `--log-format` over its format.
    pub fn from_config(cfg: &markaz_config::LoggingConfig, format: Option<LogFormat>) -> Self {
        Self {
            format: format.unwrap_or(cfg.format),
            filter: cfg.level.as_str().to_string(),
            file: cfg.file.clone(),
            file_max_bytes: cfg.file_max_bytes,
            file_keep: cfg.file_keep,
        }
    }
}

/// Installs the process's subscriber. A log file that cannot be opened is an error (a
/// service whose log goes nowhere would be worse than one that does not start); a sink
/// thread that cannot be started leaves the process without a log rather than stopped.
pub fn init(opts: &LogOptions) -> anyhow::Result<()> {
    use anyhow::Context;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(opts.filter.as_str()));
    let (sink, to_terminal, to_journal) = match &opts.file {
        Some(path) => {
            let file =
                markaz_node::logging::RotatingFile::open(path, opts.file_max_bytes, opts.file_keep)
                    .with_context(|| format!("while opening the log file {}", path.display()))?;
            (markaz_node::logging::process_sink(file), false, false)
        }
        None => (
            markaz_node::logging::stderr_sink(),
            std::io::stderr().is_terminal(),
            stderr_is_journal(),
        ),
    };
    // Lines go through a bounded queue to a thread that writes them; a line that cannot
    // be written is dropped and counted, never a panic or a stall (see node::logging).
    let Ok(sink) = sink else { return Ok(()) };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || sink.line())
        .with_ansi(to_terminal)
        .log_internal_errors(false);
    let _ = match (opts.format, to_journal) {
        (LogFormat::Json, false) => builder.json().try_init(),
        (LogFormat::Json, true) => builder
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(SyslogPriority(
                tracing_subscriber::fmt::format().json().without_time(),
            ))
            .try_init(),
        (LogFormat::Pretty, false) => builder.try_init(),
        (LogFormat::Pretty, true) => builder
            .event_format(SyslogPriority(
                tracing_subscriber::fmt::format().without_time(),
            ))
            .try_init(),
    };
    Ok(())
}

/// Whether stderr is the journal's stream: `JOURNAL_STREAM` is `<device>:<inode>` of it
/// (systemd.exec(5)); a stderr redirected elsewhere by the service does not match.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// The syslog priority of a tracing level (sd-daemon(3)).
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Writes `<N>` before each line of the inner format.
struct SyslogPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for SyslogPriority<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::DEBUG), 7);
    }
}
