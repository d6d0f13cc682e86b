//! Capture of the script's log lines (`xlog`) on the current thread, so `siprox test` can
//! match what a route logged. When nothing captures, an `xlog` pays one thread-local check.

use std::cell::RefCell;

/// One captured `xlog` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The level as the script wrote it (`L_INFO`, …; `L_ERR` when it gave none).
    pub level: String,
    /// The text after pseudo-variable expansion, trailing newlines removed.
    pub text: String,
}

thread_local! {
    static LINES: RefCell<Option<Vec<LogLine>>> = const { RefCell::new(None) };
}

/// Puts the previous capture back when the current one ends, even by a panic.
struct Restore(Option<Vec<LogLine>>);

impl Drop for Restore {
    fn drop(&mut self) {
        let outer = self.0.take();
        LINES.with(|l| *l.borrow_mut() = outer);
    }
}

/// Runs `f` and returns, with its result, every line the script logged on this thread
/// meanwhile, whatever the configured log level (a test checks what the script says, not
/// what the log filter lets through).
pub fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, Vec<LogLine>) {
    let restore = Restore(LINES.with(|l| l.replace(Some(Vec::new()))));
    let out = f();
    let lines = LINES.with(|l| l.borrow_mut().take()).unwrap_or_default();
    drop(restore);
    (out, lines)
}

/// Records a line when a capture is running on this thread.
pub(crate) fn record(level: &str, text: &str) {
    LINES.with(|l| {
        if let Some(lines) = l.borrow_mut().as_mut() {
            lines.push(LogLine { level: level.to_string(), text: text.to_string() });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::{capture_logs, record};

    #[test]
    fn captures_only_inside_and_nests() {
        record("L_INFO", "before: not kept");
        let ((), outer) = capture_logs(|| {
            record("L_INFO", "one");
            let ((), inner) = capture_logs(|| record("L_DBG", "inner"));
            assert_eq!(inner.len(), 1);
            assert_eq!(inner[0].level, "L_DBG");
            record("L_ERR", "two");
        });
        let texts: Vec<_> = outer.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["one", "two"]);
        let ((), none) = capture_logs(|| ());
        assert!(none.is_empty());
    }
}
