//! `tidings serve`: the whole stack on the embedded adapters, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;

use clap::Args;
use tidings::config::{Backend, Settings};
use tidings::domain::RetrySchedule;
use tidings::App;

use crate::parse::parse_schedule;
use crate::stores::DataDir;

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Log lines as text, or as JSON objects with the same fields as on Lambda (for files and
    /// collectors).
    #[arg(long, env = "TIDINGS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Address to listen on; port 0 picks a free port (the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    data: DataDir,
    /// Waits before each delivery attempt, comma-separated [default: 0s,5s,5m,30m,2h,5h,10h,10h].
    #[arg(long, env = "TIDINGS_RETRY_SCHEDULE", value_parser = parse_schedule)]
    retry_schedule: Option<RetrySchedule>,
    /// Publishes one organization may make per minute, counted in the store [default: 0, no limit].
    #[arg(long, env = "TIDINGS_PUBLISH_LIMIT_PER_MINUTE")]
    publishes_per_minute: Option<u32>,
    /// Connect + total timeout of each delivery (and of the destination check) [default: 10s].
    #[arg(long, env = "TIDINGS_DELIVERY_TIMEOUT", value_parser = tidings::config::positive_duration)]
    delivery_timeout: Option<std::time::Duration>,
    /// Time a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open [default: 10s].
    #[arg(long, env = "TIDINGS_HEADER_TIMEOUT", value_parser = tidings::config::positive_duration)]
    header_timeout: Option<std::time::Duration>,
    /// Time a client has to send a request's body [default: 30s].
    #[arg(long, env = "TIDINGS_BODY_TIMEOUT", value_parser = tidings::config::positive_duration)]
    body_timeout: Option<std::time::Duration>,
    /// Client connections open at once; more wait until one closes [default: 1024].
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
}

impl ServeArgs {
    /// The settings these flags describe: the defaults, overridden by what was given.
    fn settings(&self) -> (Settings, tidings::server::Limits) {
        let mut settings = Settings::new(Backend::Embedded { data_dir: self.data.data_dir.clone() });
        if let Some(schedule) = &self.retry_schedule {
            settings.retry_schedule = schedule.clone();
        }
        settings.publishes_per_minute = self.publishes_per_minute.unwrap_or(settings.publishes_per_minute);
        settings.delivery_timeout = self.delivery_timeout.unwrap_or(settings.delivery_timeout);
        let defaults = tidings::server::Limits::default();
        let limits = tidings::server::Limits {
            header_timeout: self.header_timeout.unwrap_or(defaults.header_timeout),
            body_timeout: self.body_timeout.unwrap_or(defaults.body_timeout),
            max_connections: self.max_connections.map_or(defaults.max_connections, |n| n as usize),
        };
        (settings, limits)
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

pub(crate) async fn serve(args: ServeArgs) -> Result<(), String> {
    use std::io::IsTerminal;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never into files.
        .with_ansi(std::io::stderr().is_terminal())
        // A log line that cannot be written (stderr on a full disk) is dropped, never fatal.
        .log_internal_errors(false);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    // One serve per data directory: its queue has one consumer, so what that consumer left in
    // flight when it last stopped (a crash, kill -9) is safe to deliver again at once.
    let _lock = tidings::embedded::sqlite::DataDirLock::acquire(&args.data.data_dir).map_err(|e| e.to_string())?;
    let (settings, limits) = args.settings();
    let app = App::from_settings(&settings).await.map_err(|e| e.to_string())?;
    let recovered = app.queue.recover_in_flight().await.map_err(|e| e.to_string())?;
    if recovered > 0 {
        tracing::warn!(jobs = recovered, "deliveries in flight when Tidings last stopped are queued again");
    }
    let listener = tidings::server::bind(args.listen).await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    say(format_args!("Tidings listening on http://{addr} (data in {})", args.data.data_dir.display()));
    // One signal stops both the server and the delivery worker; each finishes what is in flight.
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut server_stop = stop.subscribe();
    let mut worker_stop = stop.subscribe();
    let worker = tokio::spawn(tidings::worker::run(app.clone(), async move {
        let _ = worker_stop.recv().await;
    }));
    let server = tidings::server::serve(listener, app, limits, async move {
        let _ = server_stop.recv().await;
    });
    tokio::pin!(server);
    // Requests in flight (a destination check takes up to the delivery timeout) get as long as
    // deliveries in flight do; the stop never takes longer.
    let grace = settings.delivery_timeout + tidings::worker::SHUTDOWN_GRACE;
    tokio::select! {
        result = &mut server => result.map_err(|e| e.to_string())?,
        _ = shutdown_signal() => {
            let _ = stop.send(());
            match tokio::time::timeout(grace, &mut server).await {
                Ok(result) => result.map_err(|e| e.to_string())?,
                Err(_) => tracing::warn!("requests still open at shutdown were cut off"),
            }
        }
    }
    let _ = stop.send(());
    worker.await.map_err(|e| e.to_string())?;
    say(format_args!("Tidings stopped"));
    Ok(())
}

/// A line on stdout for a long-running server: unlike `println!`, a failed write (a closed
/// pipe, a full disk) is ignored rather than fatal.
pub(crate) fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
