//! The response body the client reads: the upstream's body, frame by frame as it arrives,
//! metered on the way through.
//!
//! Nothing is held back: a data frame from upstream is handed to the client in the same poll
//! (the meter reads a copy). The one exception is a stream whose usage chunk the proxy asked
//! for on the client's behalf: there the body is re-framed event by event, so that that chunk
//! can be dropped, and every other event still leaves as soon as its blank line arrives.
//!
//! When the body ends, fails, goes silent past the idle timeout, or is dropped because the
//! client went away (which also closes the upstream connection, cancelling the request), the
//! usage event is recorded exactly once. A stream whose terminal event and usage were handed
//! on is complete however it ends: clients close as soon as they read the terminal event.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use sse_parse::SseParser;
use tokio::time::{Instant, Sleep};

use super::meter::{self, Forward, StreamMeter};
use crate::config::ProviderKind;
use crate::usage::{Outcome, Tokens, UsageEvent, UsageRecorder};

/// Non-streaming bodies are kept (for their usage) up to this size.
const MAX_METERED_BODY: usize = 16 * 1024 * 1024;
/// One SSE event larger than this is not parsed (it is still forwarded).
const MAX_EVENT: usize = 4 * 1024 * 1024;

/// How the body is metered.
pub enum Mode {
    /// A JSON body: keep a copy, parse usage at the end.
    Json(Vec<u8>),
    /// An event stream; `strip` drops the usage-only chunk the client did not ask for.
    Sse {
        parser: Box<SseParser>,
        meter: StreamMeter,
        strip: bool,
    },
    /// An error status or a body we cannot read (compressed): counted, not parsed.
    Opaque(Outcome),
}

/// What is recorded when the body finishes.
pub struct Pending {
    pub recorder: UsageRecorder,
    pub event: UsageEvent,
    pub kind: ProviderKind,
}

/// Why the body stopped early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("upstream body failed: {0}")]
    Upstream(#[from] hyper::Error),
    #[error("upstream sent nothing for {0:?}")]
    Idle(Duration),
}

pub struct MeteredBody {
    inner: Incoming,
    mode: Mode,
    pending: Option<Pending>,
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
}

impl MeteredBody {
    pub fn new(inner: Incoming, mode: Mode, pending: Pending, idle_timeout: Duration) -> Self {
        MeteredBody {
            inner,
            mode,
            pending: Some(pending),
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            idle_timeout,
        }
    }

    /// Records the usage event (once). `clean` is true when the body ended normally.
    fn finish(&mut self, clean: bool) {
        let Some(mut p) = self.pending.take() else {
            return;
        };
        let (outcome, tokens, model) = match &mut self.mode {
            Mode::Opaque(outcome) => (
                if clean { *outcome } else { Outcome::Incomplete },
                Tokens::default(),
                None,
            ),
            Mode::Json(buf) => {
                let (tokens, model) = if clean {
                    meter::body_usage(p.kind, buf)
                } else {
                    (None, None)
                };
                match tokens {
                    Some(t) => (Outcome::Complete, t, model),
                    // A whole body without usage (a model list) is a complete request with
                    // no tokens; a cut-off body is incomplete.
                    None if clean && buf.len() < MAX_METERED_BODY => {
                        (Outcome::Complete, Tokens::default(), model)
                    }
                    None => (Outcome::Incomplete, Tokens::default(), model),
                }
            }
            Mode::Sse { parser, meter, .. } => {
                // The terminal event and the usage already went to the client: the answer is
                // whole, whether or not the upstream's end of body arrived before the client
                // closed (an SDK stops reading at `[DONE]` and closes at once). Judged before
                // the flush below: an event whose closing blank line never came is not one.
                let delivered = meter.saw_end && meter.saw_usage;
                parser.finish();
                while let Some(e) = parser.next_event() {
                    meter.event(p.kind, &e.event, &e.data);
                }
                let outcome = if delivered || (clean && meter.saw_usage) {
                    Outcome::Complete
                } else {
                    Outcome::Incomplete
                };
                (outcome, meter.tokens, meter.model.take())
            }
        };
        p.event.outcome = outcome;
        p.event.tokens = tokens;
        if p.event.model.is_empty() {
            p.event.model = model.unwrap_or_else(|| "unknown".to_owned());
        }
        if outcome == Outcome::Incomplete {
            tracing::warn!(
                provider = %p.event.provider, model = %p.event.model,
                "response ended early: usage recorded as incomplete"
            );
        }
        p.recorder.record(p.event);
    }

    /// Meters one data frame; returns the bytes to forward (None: forward nothing yet).
    fn take(&mut self, data: Bytes) -> Option<Bytes> {
        let kind = match &self.pending {
            Some(p) => p.kind,
            None => return Some(data),
        };
        match &mut self.mode {
            Mode::Opaque(_) => Some(data),
            Mode::Json(buf) => {
                if buf.len() + data.len() <= MAX_METERED_BODY {
                    buf.extend_from_slice(&data);
                } else {
                    // Too big to meter: drop the copy; it will count as incomplete.
                    *buf = Vec::new();
                    self.mode = Mode::Opaque(Outcome::Incomplete);
                }
                Some(data)
            }
            Mode::Sse {
                parser,
                meter,
                strip,
            } => {
                parser.feed(&data);
                if !*strip {
                    while let Some(e) = parser.next_event() {
                        meter.event(kind, &e.event, &e.data);
                    }
                    return Some(data);
                }
                let mut out = BytesMut::new();
                while let Some(e) = parser.next_event() {
                    if meter.event(kind, &e.event, &e.data) == Forward::Keep {
                        if e.event != "message" {
                            out.extend_from_slice(b"event: ");
                            out.extend_from_slice(e.event.as_bytes());
                            out.extend_from_slice(b"\n");
                        }
                        for line in e.data.split('\n') {
                            out.extend_from_slice(b"data: ");
                            out.extend_from_slice(line.as_bytes());
                            out.extend_from_slice(b"\n");
                        }
                        out.extend_from_slice(b"\n");
                    }
                }
                (!out.is_empty()).then(|| out.freeze())
            }
        }
    }
}

/// A parser for a metered stream.
pub fn sse_parser() -> Box<SseParser> {
    Box::new(SseParser::new().max_buffer(MAX_EVENT))
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        // The client went away (or the server is shutting down) before the end.
        self.finish(false);
    }
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => {
                    ready!(this.idle.as_mut().poll(cx));
                    this.finish(false);
                    return Poll::Ready(Some(Err(BodyError::Idle(this.idle_timeout))));
                }
                Poll::Ready(None) => {
                    this.finish(true);
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.finish(false);
                    return Poll::Ready(Some(Err(BodyError::Upstream(e))));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    this.idle.as_mut().reset(Instant::now() + this.idle_timeout);
                    let out = match frame.into_data() {
                        Ok(data) => this.take(data).map(Frame::data),
                        Err(frame) => Some(frame),
                    };
                    // A server that knows the length stops polling once it has sent that many
                    // bytes, so the end is recorded as soon as the upstream body says it is
                    // over, not on the next poll.
                    if this.inner.is_end_stream() {
                        this.finish(true);
                    }
                    match out {
                        Some(frame) => return Poll::Ready(Some(Ok(frame))),
                        // A dropped usage chunk or a partial event: read on.
                        None if this.pending.is_none() => return Poll::Ready(None),
                        None => {}
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Only after the meter has seen the end: a server that believed the inner body and
        // stopped polling would drop this body unfinished and record it as incomplete.
        self.pending.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.mode {
            Mode::Sse { strip: true, .. } => SizeHint::default(),
            _ => self.inner.size_hint(),
        }
    }
}
