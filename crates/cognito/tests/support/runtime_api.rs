//! A Lambda Runtime API emulator: what the Lambda service offers a custom runtime, on loopback.
//! It hands out invocations one at a time and collects their answers, with the times they came.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use deadbolt_core::{Clock, SystemClock};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// What the function answered.
#[derive(Clone, PartialEq)]
pub enum Answer {
    /// `POST …/{id}/response`: the bytes as posted.
    Response(Vec<u8>),
    /// `POST …/{id}/error`.
    Error { error_type: String, message: String },
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Response(b) => write!(f, "Response({})", String::from_utf8_lossy(b)),
            Self::Error {
                error_type,
                message,
            } => write!(f, "Error({error_type}: {message})"),
        }
    }
}

impl Answer {
    pub fn response_json(&self) -> Option<Value> {
        match self {
            Self::Response(b) => serde_json::from_slice(b).ok(),
            Self::Error { .. } => None,
        }
    }
}

#[derive(Debug)]
pub struct Answered {
    pub answer: Answer,
    /// When the runtime took the invocation (`/next` returned).
    pub delivered: Instant,
    /// When the answer arrived.
    pub answered: Instant,
    /// The deadline passed in, and the wall-clock time the answer arrived (ms since the epoch).
    pub deadline_ms: u64,
    pub answered_ms: u64,
}

/// An invocation waiting for its answer.
pub struct Submitted {
    id: String,
    answer: oneshot::Receiver<Answered>,
    /// When it was queued.
    pub queued: Instant,
}

struct Invocation {
    id: String,
    body: Bytes,
    deadline_ms: u64,
}

struct Waiting {
    reply: oneshot::Sender<Answered>,
    delivered: Option<Instant>,
    deadline_ms: u64,
}

#[derive(Clone)]
struct Shared {
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>>,
    waiting: Arc<Mutex<HashMap<String, Waiting>>>,
    init_error: Arc<Mutex<Option<Value>>>,
}

pub struct RuntimeApi {
    addr: SocketAddr,
    send: mpsc::UnboundedSender<Invocation>,
    shared: Shared,
    next_id: AtomicU64,
    server: tokio::task::JoinHandle<()>,
}

fn wall_ms() -> u64 {
    SystemClock.now().timestamp_millis() as u64
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let (send, recv) = mpsc::unbounded_channel();
        let shared = Shared {
            queue: Arc::new(tokio::sync::Mutex::new(recv)),
            waiting: Arc::default(),
            init_error: Arc::default(),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the runtime API");
        let addr = listener.local_addr().expect("runtime API address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            send,
            shared,
            next_id: AtomicU64::new(1),
            server,
        }
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Queues an invocation with `time_limit` left; [`RuntimeApi::answer`] waits for it.
    pub fn submit(&self, body: &[u8], time_limit: Duration) -> Submitted {
        let id = format!(
            "8476a536-e9f4-11e8-9739-{:012x}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let deadline_ms = wall_ms() + time_limit.as_millis() as u64;
        let (reply, answer) = oneshot::channel();
        self.shared.waiting.lock().expect("lock").insert(
            id.clone(),
            Waiting {
                reply,
                delivered: None,
                deadline_ms,
            },
        );
        let _ = self.send.send(Invocation {
            id: id.clone(),
            body: Bytes::copy_from_slice(body),
            deadline_ms,
        });
        Submitted {
            id,
            answer,
            queued: Instant::now(),
        }
    }

    /// Waits at most `wait` for the answer to a submitted invocation.
    pub async fn answer(&self, submitted: Submitted, wait: Duration) -> Option<Answered> {
        match tokio::time::timeout(wait, submitted.answer).await {
            Ok(Ok(answered)) => Some(answered),
            _ => {
                self.shared
                    .waiting
                    .lock()
                    .expect("lock")
                    .remove(&submitted.id);
                None
            }
        }
    }

    /// Submits an invocation with `time_limit` left and waits (at most `wait`) for its answer.
    pub async fn invoke_raw(
        &self,
        body: &[u8],
        time_limit: Duration,
        wait: Duration,
    ) -> Option<Answered> {
        let submitted = self.submit(body, time_limit);
        self.answer(submitted, wait).await
    }

    /// Like [`RuntimeApi::invoke_raw`] with a JSON event, Cognito's 5 s, and 10 s of patience.
    pub async fn invoke(&self, event: &Value) -> Answered {
        let body = serde_json::to_vec(event).expect("event JSON");
        self.invoke_raw(&body, Duration::from_secs(5), Duration::from_secs(10))
            .await
            .expect("the function answered")
    }

    /// What the function reported through `/runtime/init/error`, if anything.
    pub fn init_error(&self) -> Option<Value> {
        self.shared.init_error.lock().expect("lock").clone()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(s): State<Shared>) -> impl IntoResponse {
    let Some(inv) = s.queue.lock().await.recv().await else {
        return (StatusCode::GONE, HeaderMap::new(), Bytes::new());
    };
    if let Some(w) = s.waiting.lock().expect("lock").get_mut(&inv.id) {
        w.delivered = Some(Instant::now());
    }
    let mut headers = HeaderMap::new();
    let h = |v: String| v.parse().expect("header value");
    headers.insert("lambda-runtime-aws-request-id", h(inv.id));
    headers.insert("lambda-runtime-deadline-ms", h(inv.deadline_ms.to_string()));
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        h("arn:aws:lambda:eu-west-1:111122223333:function:deadbolt-pre-auth".into()),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        h("Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1".into()),
    );
    headers.insert("content-type", h("application/json".into()));
    (StatusCode::OK, headers, inv.body)
}

fn finish(s: &Shared, id: &str, answer: Answer) -> StatusCode {
    let answered = Instant::now();
    let answered_ms = wall_ms();
    let Some(w) = s.waiting.lock().expect("lock").remove(id) else {
        return StatusCode::BAD_REQUEST;
    };
    let _ = w.reply.send(Answered {
        answer,
        delivered: w.delivered.unwrap_or(answered),
        answered,
        deadline_ms: w.deadline_ms,
        answered_ms,
    });
    StatusCode::ACCEPTED
}

async fn response(State(s): State<Shared>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    finish(&s, &id, Answer::Response(body.to_vec()))
}

async fn error(State(s): State<Shared>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let answer = Answer::Error {
        error_type: text("errorType"),
        message: text("errorMessage"),
    };
    finish(&s, &id, answer)
}

async fn init_error(State(s): State<Shared>, body: Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    *s.init_error.lock().expect("lock") = Some(v);
    StatusCode::ACCEPTED
}
