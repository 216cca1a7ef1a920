//! A browser without a browser: portal forms over plain HTTP, with cookies and CSRF tokens.

use std::collections::HashMap;

pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The CSRF token of the first form on the page.
    pub fn csrf(&self) -> String {
        let i = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no CSRF field in {}", self.body));
        let rest = &self.body[i + 19..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }
}

#[derive(Clone)]
pub struct Http {
    base: String,
    client: reqwest::Client,
    pub cookies: HashMap<String, String>,
}

impl Http {
    pub fn new(base: &str) -> Self {
        Self::from(base, "127.0.0.1")
    }

    /// Over `client` (one that trusts a test certificate authority, say).
    pub fn with_client(base: &str, client: reqwest::Client) -> Self {
        Self {
            base: base.to_string(),
            client,
            cookies: HashMap::new(),
        }
    }

    /// A client whose connections come from `ip` (any of 127.0.0.0/8 on loopback).
    pub fn from(base: &str, ip: &str) -> Self {
        Self {
            base: base.to_string(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .local_address(Some(ip.parse().unwrap()))
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, resp: reqwest::Response) -> Page {
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (kv, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = kv.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), val.to_string());
            }
        }
        Page {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap_or_default(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let resp = self
            .client
            .get(self.url(path))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(resp).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let resp = self
            .client
            .post(self.url(path))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.finish(resp).await
    }

    /// A page script's JSON request, its form token in the `x-deadbolt-csrf` header.
    pub async fn post_json(&mut self, path: &str, token: &str, body: &serde_json::Value) -> Page {
        let resp = self
            .client
            .post(self.url(path))
            .header("cookie", self.cookie_header())
            .header("x-deadbolt-csrf", token)
            .json(body)
            .send()
            .await
            .unwrap();
        self.finish(resp).await
    }

    /// The pre-sign-in CSRF token (and its cookie).
    pub async fn pre_csrf(&mut self) -> String {
        self.get("/login").await.csrf()
    }

    /// Signs in through the form; returns the answer to the form.
    pub async fn login(&mut self, email: &str, password: &str) -> Page {
        let csrf = self.pre_csrf().await;
        self.post(
            "/login",
            &[("csrf", &csrf), ("email", email), ("password", password)],
        )
        .await
    }
}

/// Stopping the server ends an open live stream: the graceful stop does not wait for the page
/// (the streams end on the signal the server is given, in a test as under `deadbolt serve`).
#[tokio::test]
async fn stopping_the_server_ends_live_streams() {
    let t = crate::helpers::TestApp::spawn().await;
    let (email, password) = ("live@example.test", "a long enough password");
    t.service
        .create_person(email, Some(password), None)
        .await
        .unwrap();
    let mut http = Http::new(&t.url);
    assert_eq!(http.login(email, password).await.status, 303);
    let cookies = http
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let stream = reqwest::Client::new()
        .get(format!("{}/me/events", t.url))
        .header("cookie", cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let body = tokio::spawn(async move { stream.text().await });
    tokio::time::timeout(std::time::Duration::from_secs(10), t.stop())
        .await
        .expect("the stop waits for no open stream");
    tokio::time::timeout(std::time::Duration::from_secs(5), body)
        .await
        .expect("the stream ended")
        .unwrap()
        .ok();
}
