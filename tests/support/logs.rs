//! What Gatehouse logs while a test runs. The capture holds on the
//! test's own thread, where a `#[tokio::test]` runtime polls every task
//! the test starts; the data plane's worker threads are not captured.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing::subscriber::NoSubscriber;
use tracing::Dispatch;

/// A second dispatcher, alive for the whole run. With one registered
/// dispatcher alone, tracing decides whether a log line is wanted from the
/// default of the thread that first reaches it, and remembers that for
/// every thread: a line another test's thread reached first would never
/// be captured here. With two, it asks each dispatcher, and every thread
/// its own.
fn second_dispatcher() {
    static SECOND: OnceLock<Dispatch> = OnceLock::new();
    SECOND.get_or_init(|| Dispatch::new(NoSubscriber::default()));
}

/// The log lines since `capture`, for as long as it is held.
pub struct Logs {
    lines: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Captures every line at `info` and above, on this thread.
    pub fn capture() -> Logs {
        second_dispatcher();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || Buffer(writer.clone()))
            .finish();
        Logs {
            lines,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lines.lock().expect("lock")).into_owned()
    }
}
