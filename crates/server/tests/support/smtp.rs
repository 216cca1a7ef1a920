//! Just enough SMTP to receive the portal's emails, for the test binaries that need them
//! (included by path from each: the API tests and the browser tests).

use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What was received: (recipient, body without soft line breaks).
pub type Inbox = Arc<Mutex<Vec<(String, String)>>>;

/// Starts a receiver on a free loopback port; returns the port and what it receives.
pub fn smtp_receiver() -> (u16, Inbox) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let inbox: Inbox = Arc::default();
    let store = inbox.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let store = store.clone();
            std::thread::spawn(move || {
                let _ = smtp_session(conn, &store);
            });
        }
    });
    (port, inbox)
}

fn smtp_session(conn: std::net::TcpStream, inbox: &Inbox) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = conn.try_clone()?;
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
            out.write_all(b"250-test.example\r\n250 8BITMIME\r\n")?;
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
            let mut inbox = inbox.lock().unwrap();
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
