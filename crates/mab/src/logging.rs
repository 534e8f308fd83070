//! Log lines of the library crates (`tracing`: a host key learnt with
//! `accept-new`, a build response cut short, `MAB_LOG=debug`) as progress
//! events of the active renderer: a `warn` or `error` line becomes an
//! [`Event::Warning`], any other an [`Event::Diagnostic`] with its level.
//! So with bars they are printed above the bars, and with
//! `--progress json` they are JSON lines like every other event.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::Layer;

use crate::progress::{self, Event};

/// Installs the forwarding of log lines at `level` (`MAB_LOG`: `error`,
/// `warn`, `info`, `debug`, `trace`; default and anything else `warn`).
pub fn install(level: Option<&str>) {
    let level = level
        .and_then(|level| {
            level
                .parse::<tracing_subscriber::filter::LevelFilter>()
                .ok()
        })
        .unwrap_or(tracing_subscriber::filter::LevelFilter::WARN);
    let subscriber = tracing_subscriber::registry().with(level).with(ToProgress);
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The layer that turns each log line into an event ([`log_event`]) and
/// reports it with [`progress::report`].
struct ToProgress;

impl<S: tracing::Subscriber> Layer<S> for ToProgress {
    fn on_event(&self, event: &tracing::Event<'_>, _context: Context<'_, S>) {
        let mut message = Message::default();
        event.record(&mut message);
        progress::report(log_event(event.metadata().level(), message.text()));
    }
}

/// The progress event of a log line at `level` saying `message`.
fn log_event(level: &tracing::Level, message: String) -> Event {
    let level = match *level {
        tracing::Level::ERROR | tracing::Level::WARN => return Event::Warning { message },
        tracing::Level::INFO => "info",
        tracing::Level::DEBUG => "debug",
        tracing::Level::TRACE => "trace",
    };
    Event::Diagnostic {
        level: level.to_owned(),
        message,
    }
}

/// A log line's text: its message, then any other fields as `name=value`.
#[derive(Default)]
struct Message {
    message: String,
    fields: Vec<String>,
}

impl Message {
    fn text(self) -> String {
        std::iter::once(self.message)
            .filter(|message| !message.is_empty())
            .chain(self.fields)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.fields.push(format!("{}={value:?}", field.name()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_become_warning_events_and_the_rest_diagnostics() {
        let message = || "learnt the host key of pi".to_owned();
        let cases = [
            (tracing::Level::WARN, Event::Warning { message: message() }),
            (tracing::Level::ERROR, Event::Warning { message: message() }),
            (
                tracing::Level::INFO,
                Event::Diagnostic {
                    level: "info".to_owned(),
                    message: message(),
                },
            ),
            (
                tracing::Level::DEBUG,
                Event::Diagnostic {
                    level: "debug".to_owned(),
                    message: message(),
                },
            ),
        ];
        for (level, expected) in cases {
            assert_eq!(log_event(&level, message()), expected, "{level}");
        }
    }

    #[test]
    fn a_log_line_is_its_message_then_its_fields() {
        /// Records what the layer makes of each line, in place of a renderer.
        struct Collect(std::sync::Arc<std::sync::Mutex<Vec<String>>>);
        impl<S: tracing::Subscriber> Layer<S> for Collect {
            fn on_event(&self, event: &tracing::Event<'_>, _context: Context<'_, S>) {
                let mut message = Message::default();
                event.record(&mut message);
                self.0.lock().unwrap().push(message.text());
            }
        }
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Collect(lines.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!("the build response from {} ended early", "local");
            tracing::debug!(attempt = 2, "retrying");
        });
        assert_eq!(
            *lines.lock().unwrap(),
            [
                "the build response from local ended early",
                "retrying attempt=2"
            ]
        );
    }
}
