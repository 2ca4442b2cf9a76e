//! Response bodies that are not sent as one buffer: a huge generated page and a page cut in
//! the middle. Both implement hyper's (`http_body`'s) `Body` directly, so no stream adapter
//! crate is needed.

use std::io::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::{Frame, SizeHint};

use crate::users::write_generated_user;

/// Size of one generated chunk before compression.
const CHUNK: usize = 64 * 1024;

/// A syntactically valid JSON array of generated users, exactly `bytes` long (at least 2),
/// padded with spaces before the closing `]`, generated while it is sent and gzip-encoded on
/// the fly when asked.
pub(crate) struct HugeBody {
    /// Bytes of the decoded body still to generate, the closing `]` included.
    remaining: usize,
    total: usize,
    started: bool,
    next_user: usize,
    base_url: String,
    scratch: Vec<u8>,
    gzip: Option<flate2::write::GzEncoder<Vec<u8>>>,
    done: bool,
}

impl HugeBody {
    pub(crate) fn new(bytes: usize, base_url: &str, gzip: bool) -> HugeBody {
        let total = bytes.max(2);
        HugeBody {
            remaining: total,
            total,
            started: false,
            next_user: 0,
            base_url: base_url.to_owned(),
            scratch: Vec::with_capacity(1500),
            gzip: gzip
                .then(|| flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast())),
            done: false,
        }
    }

    /// The next up-to-`CHUNK` bytes of the decoded body (empty once everything was generated).
    fn generate(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHUNK.min(self.remaining) + 1500);
        if !self.started && self.remaining > 0 {
            out.push(b'[');
            self.remaining -= 1;
            self.started = true;
        }
        while out.len() < CHUNK && self.remaining > 0 {
            if self.remaining == 1 {
                out.push(b']');
                self.remaining = 0;
                break;
            }
            self.scratch.clear();
            if self.next_user > 0 {
                self.scratch.push(b',');
            }
            write_generated_user(&mut self.scratch, self.next_user, &self.base_url);
            if self.scratch.len() < self.remaining {
                out.extend_from_slice(&self.scratch);
                self.remaining -= self.scratch.len();
                self.next_user += 1;
            } else {
                // No further user fits (`remaining` only shrinks): pad, then close.
                let pad = (self.remaining - 1).min(CHUNK);
                out.resize(out.len() + pad, b' ');
                self.remaining -= pad;
            }
        }
        out
    }

    /// The next bytes to send, `None` once done.
    fn next_chunk(&mut self) -> Option<Vec<u8>> {
        while !self.done {
            let raw = self.generate();
            let finished = self.remaining == 0;
            let Some(enc) = self.gzip.as_mut() else {
                self.done = finished;
                if raw.is_empty() {
                    continue;
                }
                return Some(raw);
            };
            // Writing to a Vec cannot fail.
            let _ = enc.write_all(&raw);
            if finished {
                let _ = enc.try_finish();
                self.done = true;
            }
            let out = std::mem::take(enc.get_mut());
            if !out.is_empty() {
                return Some(out);
            }
        }
        None
    }
}

impl hyper::body::Body for HugeBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        Poll::Ready(
            this.next_chunk()
                .map(|chunk| Ok(Frame::data(Bytes::from(chunk)))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        if self.gzip.is_some() {
            SizeHint::default()
        } else {
            SizeHint::with_exact(self.total as u64)
        }
    }
}

/// Announces `whole.len()` bytes, sends the first half, waits a moment so it is flushed to the
/// client, then fails, which makes hyper abort the connection.
pub(crate) struct CutBody {
    announced: usize,
    part: Option<Bytes>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl CutBody {
    pub(crate) fn new(whole: Vec<u8>) -> CutBody {
        let announced = whole.len();
        let mut part = whole;
        part.truncate(announced / 2);
        CutBody {
            announced,
            part: Some(Bytes::from(part)),
            pause: None,
        }
    }
}

impl hyper::body::Body for CutBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(part) = this.part.take() {
            this.pause = Some(Box::pin(tokio::time::sleep(Duration::from_millis(50))));
            if !part.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(part))));
            }
        }
        if let Some(pause) = this.pause.as_mut() {
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.pause = None;
        }
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "fake Okta: connection cut mid-body (injected fault)",
        ))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.announced as u64)
    }
}
