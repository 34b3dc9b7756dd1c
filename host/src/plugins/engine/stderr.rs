//! What a plugin or task component writes to stderr: its last few KiB are kept per
//! instance, so that when the instance traps the error can say why in the guest's own
//! words. A Rust guest's panic message, for instance, goes to stderr just before the
//! `unreachable` trap that ends it; without this, all the host could report is
//! "wasm `unreachable` instruction executed".
//!
//! Writes never fail and never block: past the cap the oldest bytes are dropped, so a
//! guest printing without end costs the host a bounded buffer and nothing else. Nothing
//! is forwarded to the host's log here (the `log` import is the way to log, rate-limited).

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Bytes of stderr kept per instance.
const KEEP: usize = 4096;
/// At most this much of the tail is quoted in an error.
const QUOTE: usize = 600;

/// The tail of one instance's stderr; clones share it.
#[derive(Clone, Default)]
pub(crate) struct StderrTail(Arc<Mutex<Vec<u8>>>);

impl StderrTail {
    /// Forgets what earlier calls wrote: a trap is explained by its own call's output.
    pub(crate) fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    fn push(&self, bytes: &[u8]) {
        let mut buf = self.0.lock().unwrap();
        buf.extend_from_slice(bytes);
        if buf.len() > KEEP {
            let cut = buf.len() - KEEP;
            buf.drain(..cut);
        }
    }

    /// The end of what the guest wrote, on one line ("..." first when cut), or empty: its
    /// own words for why it stopped (a Rust panic message, a Python or JavaScript
    /// exception).
    pub(crate) fn words(&self) -> String {
        let buf = self.0.lock().unwrap();
        let text = String::from_utf8_lossy(&buf);
        // Rust's hint about backtraces means nothing to a wasm guest: drop it.
        let text: Vec<&str> = text.lines().filter(|l| !l.starts_with("note: run with `RUST_BACKTRACE=1`")).collect();
        let text = text.join("\n");
        let mut text = text.trim();
        // `thread '<unnamed>' (1) panicked at ...`: the thread is the guest's only one.
        if text.starts_with("thread '")
            && let Some(i) = text.find(" panicked at ")
        {
            text = &text[i + 1..];
        }
        if text.is_empty() {
            return String::new();
        }
        // The end is what explains the trap; keep whole characters.
        let mut start = text.len().saturating_sub(QUOTE);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        let quoted = text[start..].split_whitespace().collect::<Vec<_>>().join(" ");
        format!("{}{quoted}", if start > 0 { "..." } else { "" })
    }

    /// `trap` (`... trapped: <what the runtime saw>`) with the guest's own words first when
    /// it wrote any: `trapped: panicked at src/lib.rs:15:9: boom (wasm \`unreachable\` ...)`.
    pub(crate) fn explain(&self, trap: String) -> String {
        let words = self.words();
        if words.is_empty() {
            return trap;
        }
        match trap.split_once("trapped: ") {
            Some((before, what)) => format!("{before}trapped: {words} ({what})"),
            None => format!("{trap}: {words}"),
        }
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for StderrTail {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(KEEP)
    }
}

#[async_trait::async_trait]
impl Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_end_and_puts_the_guests_words_first() {
        let t = StderrTail::default();
        assert_eq!(t.explain("trapped: wasm trap".into()), "trapped: wasm trap");
        t.push(b"thread '<unnamed>' (1) panicked at src/lib.rs:15:9:\ntrap_events refuses 3 events\n");
        t.push(b"note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n");
        assert_eq!(
            t.explain("register trapped: wasm `unreachable` instruction executed".into()),
            "register trapped: panicked at src/lib.rs:15:9: trap_events refuses 3 events (wasm `unreachable` instruction executed)"
        );
        for _ in 0..10_000 {
            t.push(b"noise ");
        }
        t.push("the end é".as_bytes());
        assert_eq!(t.0.lock().unwrap().len(), KEEP, "bounded");
        let words = t.words();
        assert!(words.starts_with("...") && words.contains("noise noise") && words.ends_with("the end é"), "{words}");
        assert!(words.len() < QUOTE + 8);
    }
}
