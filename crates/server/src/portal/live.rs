//! Live pages: the one loop behind every server-sent event stream, and what each feed adds.

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Portal, PortalState};

/// How often a stream looks for news.
const POLL: Duration = Duration::from_millis(500);

/// What one live page watches.
pub trait Feed: Send + 'static {
    /// One look for news: the event to send, or none yet.
    fn poll(&mut self, s: &PortalState) -> impl Future<Output = Option<Event>> + Send;
}

/// A stream that polls `feed` until the server stops, the stream has lasted its time, or the
/// session `session_hash` ends.
pub fn stream<F: Feed>(
    s: PortalState,
    portal: Arc<Portal>,
    session_hash: String,
    feed: F,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let started = Instant::now();
    let stream = futures_util::stream::unfold((s, feed), move |(s, mut feed)| {
        let portal = portal.clone();
        let session_hash = session_hash.clone();
        async move {
            loop {
                tokio::time::sleep(POLL).await;
                if portal.stream_over(started) {
                    return None;
                }
                // The stream ends with the session.
                match s.service.session(&session_hash, s.service.now()).await {
                    Ok(Some(_)) => {}
                    _ => return None,
                }
                if let Some(ev) = feed.poll(&s).await {
                    return Some((Ok(ev), (s, feed)));
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
