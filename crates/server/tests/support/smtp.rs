//! Just enough SMTP to receive the portal's emails, for the test binaries that need them
//! (included by path from each: the API tests and the browser tests). It can also be taken
//! down (every connection is refused with a 421, as a relay in trouble answers) and brought
//! back, and it takes AUTH PLAIN/LOGIN and keeps what it was given.

// Each binary that includes this file uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What was received: (recipient, message with its headers, without soft line breaks).
pub type Inbox = Arc<Mutex<Vec<(String, String)>>>;

/// A running receiver and its switches.
#[derive(Clone)]
pub struct SmtpReceiver {
    pub port: u16,
    pub inbox: Inbox,
    /// While true, every connection is answered 421 and closed.
    pub down: Arc<AtomicBool>,
    /// Connections refused while down.
    pub refused: Arc<AtomicUsize>,
    /// Connections made, refused or not.
    pub connections: Arc<AtomicUsize>,
    /// The credentials given with AUTH, as `user:password`.
    pub auths: Arc<Mutex<Vec<String>>>,
}

impl SmtpReceiver {
    /// Starts a receiver on a free loopback port.
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let r = Self {
            port: listener.local_addr().unwrap().port(),
            inbox: Arc::default(),
            down: Arc::default(),
            refused: Arc::default(),
            connections: Arc::default(),
            auths: Arc::default(),
        };
        let shared = r.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = shared.session(conn);
                });
            }
        });
        r
    }

    /// The messages received for `to`, in order.
    pub fn to(&self, to: &str) -> Vec<String> {
        self.inbox
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| r == to)
            .map(|(_, b)| b.clone())
            .collect()
    }

    fn session(&self, conn: std::net::TcpStream) -> std::io::Result<()> {
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut out = conn.try_clone()?;
        self.connections.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            out.write_all(b"421 4.3.2 test.example service not available\r\n")?;
            return Ok(());
        }
        let mut reader = BufReader::new(conn);
        out.write_all(b"220 test.example ESMTP\r\n")?;
        let mut rcpt = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let cmd = line.trim_end().to_ascii_uppercase();
            if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                out.write_all(b"250-test.example\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")?;
            } else if cmd.starts_with("AUTH PLAIN") {
                let b64 = line.trim_end()[10..].trim().to_string();
                let b64 = if b64.is_empty() {
                    out.write_all(b"334 \r\n")?;
                    line.clear();
                    reader.read_line(&mut line)?;
                    line.trim_end().to_string()
                } else {
                    b64
                };
                use base64::Engine;
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap_or_default();
                let parts: Vec<String> = raw
                    .split(|b| *b == 0)
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect();
                if parts.len() == 3 {
                    self.auths
                        .lock()
                        .unwrap()
                        .push(format!("{}:{}", parts[1], parts[2]));
                }
                out.write_all(b"235 2.7.0 ok\r\n")?;
            } else if cmd.starts_with("RCPT TO:") {
                let addr = line.trim_end()[8..]
                    .trim()
                    .trim_matches(|c| c == '<' || c == '>')
                    .to_lowercase();
                rcpt.push(addr);
                out.write_all(b"250 ok\r\n")?;
            } else if cmd == "DATA" {
                out.write_all(b"354 go on\r\n")?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    data.push_str(&line);
                }
                let body = data.replace("=\r\n", "").replace("=3D", "=");
                let mut inbox = self.inbox.lock().unwrap();
                for r in rcpt.drain(..) {
                    inbox.push((r, body.clone()));
                }
                out.write_all(b"250 queued\r\n")?;
            } else if cmd == "QUIT" {
                out.write_all(b"221 bye\r\n")?;
                return Ok(());
            } else {
                out.write_all(b"250 ok\r\n")?;
            }
        }
    }
}

/// Starts a receiver on a free loopback port; returns the port and what it receives.
pub fn smtp_receiver() -> (u16, Inbox) {
    let r = SmtpReceiver::start();
    (r.port, r.inbox)
}
