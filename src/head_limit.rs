//! Every connection's bytes pass through [`HeadLimit`] before the HTTP/1 parser sees them, so a
//! request head too long to parse gets an answer in JSON like every other error: a request line
//! of more than [`MAX_REQUEST_LINE`] bytes a `414`, a head of more than [`MAX_HEAD`] bytes a
//! `431`. (actix-http answers both itself with an empty body, and cannot be told otherwise: the
//! `http` crate refuses request targets of 65,535 bytes and more, and the parser's buffer stops at
//! 128 KiB.)
//!
//! Only request heads are looked at, byte by byte until the blank line; bodies pass through
//! untouched. A head starts where the connection starts and after each response the server
//! writes (not after `100 Continue`). Pipelined requests that arrive in the same read as the
//! previous one are left to the parser.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest request line passed on: the `http` crate refuses longer request targets.
pub const MAX_REQUEST_LINE: usize = 65_534;
/// The longest request head passed on, below actix-http's 128 KiB read buffer.
pub const MAX_HEAD: usize = 96 * 1024;

/// A complete `connection: close` response with a JSON error body, its length computed.
fn refusal(status: &str, error: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({"error": error, "message": message}).to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

static URI_TOO_LONG: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    refusal(
        "414 URI Too Long",
        "uri_too_long",
        &format!("the request line is longer than {MAX_REQUEST_LINE} bytes; send the query in fewer bytes"),
    )
});

static HEAD_TOO_LARGE: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    refusal(
        "431 Request Header Fields Too Large",
        "headers_too_large",
        &format!("the request's headers are longer than {MAX_HEAD} bytes"),
    )
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a request line: `seen` bytes so far.
    Line { seen: usize },
    /// Reading header lines: `seen` bytes of the head so far, `newlines` in a row (CR aside).
    Headers { seen: usize, newlines: u8 },
    /// A body, or anything until the next response: passed through unread.
    Body,
}

/// An I/O stream whose incoming request heads are checked for length (see the module doc).
pub struct HeadLimit<T> {
    io: T,
    state: State,
    /// A refusal being written: the response and how much of it is out.
    refusal: Option<(&'static [u8], usize)>,
    /// After a refusal: whether our side is shut down, and how many bytes of the rest of the
    /// refused request were read and dropped.
    closing: Option<(bool, usize)>,
}

/// How much of a refused request is read and dropped before the stream ends. Closing a socket
/// with unread bytes makes the kernel answer with a reset, which can destroy the refusal before
/// the client reads it; the server's request timeout bounds how long this can take.
const DRAIN_AT_MOST: usize = 1024 * 1024;

impl<T> HeadLimit<T> {
    pub fn new(io: T) -> Self {
        Self {
            io,
            state: State::Line { seen: 0 },
            refusal: None,
            closing: None,
        }
    }

    /// Follows the head through `bytes`; the refusal to send when it is too long.
    fn scan(&mut self, bytes: &[u8]) -> Option<&'static [u8]> {
        for &b in bytes {
            self.state = match self.state {
                // A request starts with a method token; anything else is a body the server
                // answered before reading it all.
                State::Line { seen: 0 } if !b.is_ascii_uppercase() => {
                    self.state = State::Body;
                    return None;
                }
                State::Line { .. } if b == b'\n' => State::Headers {
                    seen: 0,
                    newlines: 1,
                },
                State::Line { seen } if seen + 1 > MAX_REQUEST_LINE => return Some(&URI_TOO_LONG),
                State::Line { seen } => State::Line { seen: seen + 1 },
                State::Headers { newlines: 1, .. } if b == b'\n' => {
                    self.state = State::Body;
                    return None;
                }
                State::Headers { seen, .. } if seen + 1 > MAX_HEAD => return Some(&HEAD_TOO_LARGE),
                State::Headers { seen, newlines } => State::Headers {
                    seen: seen + 1,
                    newlines: match b {
                        b'\n' => newlines + 1,
                        b'\r' => newlines,
                        _ => 0,
                    },
                },
                State::Body => return None,
            };
        }
        None
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> HeadLimit<T> {
    /// Writes the refusal; ready once all of it is out.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((response, written)) = self.refusal {
            if written == response.len() {
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.io).poll_write(cx, &response[written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.refusal = Some((response, written + n)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for HeadLimit<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.refusal.is_some() {
            // Answered: once the refusal is out and what the client still sends is drained, the
            // server sees the end of the stream.
            match this.poll_refusal(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            let (shut, drained) = this.closing.get_or_insert((false, 0));
            if !*shut {
                match Pin::new(&mut this.io).poll_shutdown(cx) {
                    Poll::Ready(_) => *shut = true,
                    Poll::Pending => return Poll::Pending,
                }
            }
            let mut scratch = [0u8; 8192];
            while *drained < DRAIN_AT_MOST {
                let mut sink = ReadBuf::new(&mut scratch);
                match Pin::new(&mut this.io).poll_read(cx, &mut sink) {
                    Poll::Ready(Ok(())) if sink.filled().is_empty() => break,
                    Poll::Ready(Ok(())) => *drained += sink.filled().len(),
                    Poll::Ready(Err(_)) => break,
                    Poll::Pending => return Poll::Pending,
                }
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            if this.state != State::Body {
                if let Some(response) = this.scan(&buf.filled()[before..]) {
                    tracing::warn!(
                        status = &response[9..12].escape_ascii().to_string(),
                        "request head too long; refused"
                    );
                    buf.set_filled(before);
                    this.refusal = Some((response, 0));
                    return Pin::new(this).poll_read(cx, buf);
                }
            }
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadLimit<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // A response starts: the client's next bytes are a new request head.
        if bytes.starts_with(b"HTTP/1.1 ") && !bytes.starts_with(b"HTTP/1.1 100 ") {
            this.state = State::Line { seen: 0 };
        }
        Pin::new(&mut this.io).poll_write(cx, bytes)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(response: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len(), "content-length is exact");
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn the_refusals_are_json_with_exact_lengths() {
        assert_eq!(body_of(&URI_TOO_LONG)["error"], "uri_too_long");
        assert_eq!(body_of(&HEAD_TOO_LARGE)["error"], "headers_too_large");
    }

    #[test]
    fn heads_are_followed_and_bodies_passed_over() {
        let mut limit = HeadLimit::new(());
        assert_eq!(limit.scan(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), None);
        assert_eq!(limit.state, State::Body);
        let long = vec![b'a'; MAX_REQUEST_LINE + 1];
        assert_eq!(limit.scan(&long), None, "a body is not a request line");
        limit.state = State::Line { seen: 0 };
        assert_eq!(limit.scan(b"GET /"), None);
        assert_eq!(limit.scan(&long), Some(&URI_TOO_LONG[..]));
        let mut limit = HeadLimit::new(());
        assert_eq!(limit.scan(b"GET / HTTP/1.1\r\n"), None);
        let header = vec![b'h'; MAX_HEAD + 1];
        assert_eq!(limit.scan(&header), Some(&HEAD_TOO_LARGE[..]));
        let mut limit = HeadLimit::new(());
        assert_eq!(limit.scan(b"{\"json\": 1}"), None);
    }
}
