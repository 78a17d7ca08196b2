//! Signals as tokens: the first SIGINT, SIGTERM or SIGHUP (a closed terminal) asks to stop,
//! a second one asks to stop at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// The two stages of stopping.
#[derive(Clone)]
pub struct Signals {
    /// Cancelled by the first signal.
    pub stop: CancellationToken,
    /// Cancelled by the second.
    pub now: CancellationToken,
}

impl Signals {
    /// Installs the handlers (inside a tokio runtime). From now on these signals no longer
    /// end the process by themselves.
    pub fn install() -> std::io::Result<Self> {
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        let me = Self {
            stop: CancellationToken::new(),
            now: CancellationToken::new(),
        };
        let tokens = me.clone();
        tokio::spawn(async move {
            for token in [&tokens.stop, &tokens.now] {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
                token.cancel();
            }
        });
        Ok(me)
    }
}
