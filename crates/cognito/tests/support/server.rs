//! The real Deadbolt server, started on port 0 with a fresh SQLite store, one company, and one
//! application whose signing key the function uses.

use deadbolt::{Config, MasterKeySource, Service};
use deadbolt_core::{AccountState, SystemClock, UnenrolledPolicy};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// The application's issuer, as the function's `APP_FQDN`.
pub const ISSUER: &str = "app.example.com";

pub struct Server {
    /// The function's `API_URI` (also the tokens' audience).
    pub api_uri: String,
    /// The application's signing key, base64, as the portal shows it once.
    pub signing_key: String,
    pub app_id: String,
    /// Where the server itself listens.
    pub addr: std::net::SocketAddr,
    pub service: Service,
    _dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Server {
    pub async fn start() -> Self {
        Self::start_as(None).await
    }

    /// Started with `public_url` as the API's public URL (the audience tokens must name), for a
    /// server reached through something in front of it.
    pub async fn start_as(public_url: Option<String>) -> Self {
        Self::start_configured(public_url, None).await
    }

    /// Serving HTTPS with a certificate of `ca` for `127.0.0.1`.
    pub async fn start_https(ca: &super::pki::Ca) -> Self {
        Self::start_configured(None, Some(ca)).await
    }

    async fn start_configured(public_url: Option<String>, ca: Option<&super::pki::Ca>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db_url = format!("sqlite://{}", dir.path().join("deadbolt.service").display());
        let key = MasterKeySource::default();
        let service = Service::open(&db_url, &key, Arc::new(SystemClock))
            .await
            .expect("open the store");
        let mut config = Config::new(&db_url);
        config.listen = "127.0.0.1:0".into();
        config.master_key = key;
        config.rate_limit = 0;
        config.public_url = public_url.clone();
        config.tls = ca.map(|ca| {
            let (cert, key) = ca.server().write(dir.path());
            deadbolt::tls::TlsConfig::new(cert, key)
        });
        let app = deadbolt::Server::build_with(config, service.clone())
            .await
            .expect("build the server");
        let api_uri = public_url.unwrap_or_else(|| app.url());
        let addr = app.addr();
        let (shutdown, stop) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = app
                .run_until(async {
                    let _ = stop.await;
                })
                .await;
        });

        let company = service
            .create_company("Example Ltd")
            .await
            .expect("company");
        let application = service
            .create_application(
                &company.id,
                ISSUER,
                Some("Example app"),
                UnenrolledPolicy::Allow,
                AccountState::Unlocked,
            )
            .await
            .expect("application");
        let (_, signing_key) = service
            .create_signing_key(&application.id)
            .await
            .expect("signing key");
        Self {
            api_uri,
            signing_key,
            app_id: application.id,
            addr,
            service,
            _dir: dir,
            shutdown: Some(shutdown),
        }
    }

    /// Enrols `account`, locked or not.
    pub async fn enrol(&self, account: &str, locked: bool) {
        self.service
            .enroll(&deadbolt::service::By::CLI, &self.app_id, account, None)
            .await
            .expect("enrol");
        if locked {
            self.lock(account).await;
        } else {
            self.unlock(account).await;
        }
    }

    pub async fn lock(&self, account: &str) {
        self.service
            .lock(&deadbolt::service::By::CLI, &self.app_id, account)
            .await
            .expect("lock");
    }

    pub async fn unlock(&self, account: &str) {
        self.service
            .unlock(&deadbolt::service::By::CLI, &self.app_id, account, None)
            .await
            .expect("unlock");
    }

    /// The check attempts recorded so far, waiting up to `patience` for at least `at_least`
    /// (attempts are written behind the answer).
    pub async fn attempts(&self, at_least: usize, patience: Duration) -> Vec<Attempt> {
        let until = tokio::time::Instant::now() + patience;
        loop {
            let list: Vec<Attempt> = self
                .service
                .attempts(&self.app_id, 1000)
                .await
                .expect("attempts")
                .into_iter()
                .map(|a| Attempt {
                    account: a.account,
                    locked: a.locked,
                    ip: a.ip,
                    device: a.device,
                    location: a.location,
                    integration_type: a.integration_type,
                    integration_data: a.integration_data,
                })
                .collect();
            if list.len() >= at_least || tokio::time::Instant::now() >= until {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One recorded check, as the tests read it.
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub struct Attempt {
    pub account: String,
    pub locked: bool,
    pub ip: Option<String>,
    pub device: Option<String>,
    pub location: Option<String>,
    pub integration_type: Option<String>,
    pub integration_data: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}
