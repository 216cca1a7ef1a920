//! TLS on the public listener: the certificate and key loaded from PEM files, handed to rustls by
//! a resolver whose pair is swapped when the files change, so that certificates renewed by an ACME
//! client are served without a restart.

use anyhow::Context;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// How often the certificate and key files are looked at when the configuration does not say.
pub const DEFAULT_RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Where the certificate (chain) and its key are, and how often to look for new ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificates: the server's first, then the intermediates.
    pub cert: PathBuf,
    /// PEM private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
    pub reload_every: Duration,
}

impl TlsConfig {
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            reload_every: DEFAULT_RELOAD_EVERY,
        }
    }
}

/// The pair served to new connections. Each handshake takes the pair in force when it starts; a
/// reload replaces it under the lock in one step, so a handshake never sees half of a change.
#[derive(Debug)]
pub struct Certificates {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    fn new(pair: CertifiedKey) -> Self {
        Self {
            current: RwLock::new(Arc::new(pair)),
        }
    }

    fn replace(&self, pair: CertifiedKey) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(pair);
    }

    /// The end-entity certificate served now (DER).
    pub fn served(&self) -> CertificateDer<'static> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).cert[0].clone()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// The provider rustls runs on. Ring: it is the one the HTTP clients here (reqwest) already
/// build, so the binary carries one cryptography library and the build needs no C/CMake toolchain.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks the pair: every error names the file at fault.
pub fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("cannot read the TLS certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!(
            "the TLS certificate file {} holds no PEM certificate",
            cert.display()
        );
    }
    let secret = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the TLS key {} (a PEM PKCS#8, RSA or EC private key): {e}",
            key.display()
        )
    })?;
    CertifiedKey::from_der(chain, secret, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => anyhow::anyhow!(
            "the TLS key {} does not match the certificate {}",
            key.display(),
            cert.display()
        ),
        e => anyhow::anyhow!("the TLS key {} is not usable: {e}", key.display()),
    })
}

/// TLS for one listener: the acceptor for its connections and what keeps its pair current.
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    certificates: Arc<Certificates>,
    reloader: Reloader,
}

impl Tls {
    /// Loads the pair (an error here stops the server from starting) and sets up the acceptor.
    pub fn new(config: &TlsConfig) -> anyhow::Result<Self> {
        let provider = provider();
        let mut reloader = Reloader {
            config: config.clone(),
            provider: provider.clone(),
            seen: None,
        };
        // Noted before reading, so that a change during the read is seen at the next look.
        reloader.seen = reloader.fingerprint();
        let pair = load(&config.cert, &config.key, &provider)?;
        let certificates = Arc::new(Certificates::new(pair));
        // TLS 1.3 and 1.2 only, with rustls' default (safe) cipher suites.
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS versions")?
            .with_no_client_auth()
            .with_cert_resolver(certificates.clone());
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            certificates,
            reloader,
        })
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.acceptor.clone()
    }

    pub fn certificates(&self) -> Arc<Certificates> {
        self.certificates.clone()
    }

    /// Looks at the files every `reload_every` and serves a new pair once it loads; runs until
    /// dropped (the server aborts it when it stops).
    pub async fn watch(self) {
        let Self {
            certificates,
            mut reloader,
            ..
        } = self;
        let every = reloader.config.reload_every;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Reading two small files; off the runtime's threads all the same.
            let (r, back) = match tokio::task::spawn_blocking(move || {
                let r = reloader.poll();
                (r, reloader)
            })
            .await
            {
                Ok(done) => done,
                Err(_) => return,
            };
            reloader = back;
            match r {
                Reload::Unchanged => {}
                Reload::Loaded(pair) => {
                    certificates.replace(*pair);
                    tracing::info!(
                        cert = %reloader.config.cert.display(),
                        "TLS certificate reloaded: new connections use it"
                    );
                }
                Reload::Refused(e) => tracing::warn!(
                    error = %format!("{e:#}"),
                    "the changed TLS certificate or key does not load; still serving the previous one"
                ),
            }
        }
    }
}

/// What a look at the files found.
pub enum Reload {
    Unchanged,
    Loaded(Box<CertifiedKey>),
    /// The files changed but do not make a usable pair. Not tried again until they change again,
    /// so a broken pair is reported once, not at every look.
    Refused(anyhow::Error),
}

/// Notices changes to the two files by their modification time, size and inode. Polling rather
/// than inotify: it sees the renames and symlink swaps ACME clients and mounted secrets use
/// (certbot's `live/` links, a Kubernetes secret's `..data` link) on any file system, costs two
/// `stat` calls every few seconds, and needs no watcher dependency.
pub struct Reloader {
    config: TlsConfig,
    provider: Arc<CryptoProvider>,
    seen: Option<Fingerprint>,
}

type Fingerprint = [(Option<SystemTime>, u64, u64); 2];

impl Reloader {
    fn fingerprint(&self) -> Option<Fingerprint> {
        let one = |p: &Path| {
            let m = std::fs::metadata(p).ok()?;
            #[cfg(unix)]
            let ino = std::os::unix::fs::MetadataExt::ino(&m);
            #[cfg(not(unix))]
            let ino = 0;
            Some((m.modified().ok(), m.len(), ino))
        };
        Some([one(&self.config.cert)?, one(&self.config.key)?])
    }

    /// Loads the pair if the files changed since the last look.
    pub fn poll(&mut self) -> Reload {
        let now = self.fingerprint();
        if now == self.seen {
            return Reload::Unchanged;
        }
        self.seen = now;
        match load(&self.config.cert, &self.config.key, &self.provider) {
            Ok(pair) => Reload::Loaded(Box::new(pair)),
            Err(e) => Reload::Refused(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path) -> (rcgen::CertifiedKey<rcgen::KeyPair>, TlsConfig) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let config = TlsConfig::new(dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&config.cert, made.cert.pem()).unwrap();
        std::fs::write(&config.key, made.signing_key.serialize_pem()).unwrap();
        (made, config)
    }

    #[test]
    fn sec1_and_pkcs1_keys_load_as_well_as_pkcs8() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tls");
        for (cert, key) in [
            ("ec-cert.pem", "ec-sec1-key.pem"),
            ("rsa-cert.pem", "rsa-pkcs1-key.pem"),
        ] {
            load(&dir.join(cert), &dir.join(key), &provider())
                .unwrap_or_else(|e| panic!("{key}: {e:#}"));
        }
        let err = load(
            &dir.join("ec-cert.pem"),
            &dir.join("rsa-pkcs1-key.pem"),
            &provider(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn a_broken_change_is_reported_once_and_a_good_one_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (_, config) = pair(dir.path());
        let tls = Tls::new(&config).unwrap();
        let mut reloader = tls.reloader;
        assert!(matches!(reloader.poll(), Reload::Unchanged));

        std::fs::write(&config.key, "not a key").unwrap();
        match reloader.poll() {
            Reload::Refused(e) => assert!(e.to_string().contains("key.pem"), "{e}"),
            _ => panic!("a key that is not PEM is refused"),
        }
        assert!(
            matches!(reloader.poll(), Reload::Unchanged),
            "reported once"
        );

        let (made, _) = pair(dir.path());
        match reloader.poll() {
            Reload::Loaded(loaded) => assert_eq!(loaded.cert[0], *made.cert.der()),
            _ => panic!("the repaired pair loads"),
        }
    }
}
