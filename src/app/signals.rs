//! The process's signals: SIGTERM/SIGINT drain, SIGHUP reloads.

use std::sync::Arc;

use crate::control::Control;

/// Installs the process's signal handling, on a thread of its own:
/// SIGTERM/SIGINT drain the server through `control` (the second one exits at
/// once, status 1); SIGHUP reloads, as `POST /reload` does. Process-wide, so
/// the binary calls it, not [`super::run`] (a test or an embedding process keeps its
/// own signals).
pub fn handle_signals(control: Arc<Control>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for sig in signals.forever() {
            match sig {
                // On a thread of its own: loading issuers can block on an
                // HSM, and this loop must stay free to handle SIGTERM.
                SIGHUP => {
                    let control = control.clone();
                    let spawned = std::thread::Builder::new().name("reload".into()).spawn(move || {
                        match control.reload() {
                            Ok(summary) => log::info!("SIGHUP: {summary}"),
                            Err(e) => {
                                log::error!("SIGHUP: reload failed, still serving the previous config: {e}")
                            }
                        }
                    });
                    if let Err(e) = spawned {
                        log::error!("SIGHUP: cannot start the reload: {e}");
                    }
                }
                _ if control.is_draining() => {
                    log::warn!("second stop signal: exiting without waiting for connections");
                    // _exit: no atexit handlers or destructors racing the
                    // PKCS#11 and executor threads still running.
                    #[allow(unsafe_code)]
                    // SAFETY: _exit(2) only ends the process.
                    unsafe {
                        libc::_exit(1)
                    };
                }
                _ => {
                    log::info!("stop signal: no new connections; finishing the requests in flight");
                    control.drain();
                }
            }
        }
    })?;
    Ok(())
}
