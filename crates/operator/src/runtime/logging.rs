//! Process-wide `tracing` subscriber: the filter and format come from [`RuntimeArgs`].

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::args::{LogFormat, RuntimeArgs};

/// Installs the global subscriber. Fails if the filter is invalid or a subscriber is
/// already installed (it can be set once per process).
pub fn init_logging(args: &RuntimeArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("--log-level {:?}", args.log_level))?;
    let registry = tracing_subscriber::registry().with(filter);
    match args.log_format {
        LogFormat::Plain => registry.with(tracing_subscriber::fmt::layer()).try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
    }
    .context("installing the log subscriber")
}
