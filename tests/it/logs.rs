//! Log capture for tests that run the daemon in this process and read what it logged.
//!
//! One global subscriber serves the whole test binary and writes each event to the buffer of
//! the thread that logged it, when that thread is capturing (else nowhere). Scoped subscribers
//! (`tracing::subscriber::set_default`) would race: a log callsite first reached by another
//! test's thread while no capturing subscriber exists is cached as "no one listens", and a
//! capture set up at that moment could miss it. With one global subscriber that listens at
//! info level, no info callsite is ever cached so.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, Once};

thread_local! {
    static BUFFER: RefCell<Option<Arc<Mutex<Vec<u8>>>>> = const { RefCell::new(None) };
}

/// Writes to this thread's capture buffer, if it has one.
struct ThreadBuffer;

impl std::io::Write for ThreadBuffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        BUFFER.with(|cell| {
            if let Some(buffer) = cell.borrow().as_ref() {
                buffer.lock().unwrap().extend_from_slice(b);
            }
        });
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stops the capture on this thread when dropped.
pub struct Capture {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl Capture {
    /// What this thread logged since the capture began.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        BUFFER.with(|cell| cell.borrow_mut().take());
    }
}

/// Captures the info-level log lines this thread writes until the returned value is dropped
/// (a `start_paused` test runs the daemon on its own thread, so that is all of them).
pub fn capture() -> Capture {
    static GLOBAL: Once = Once::new();
    GLOBAL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(|| ThreadBuffer)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
    let buffer = Arc::new(Mutex::new(Vec::new()));
    BUFFER.with(|cell| *cell.borrow_mut() = Some(buffer.clone()));
    Capture { buffer }
}
