//! Secrets at rest: signing keys encrypted under the master key (AES-256-GCM, bound to the key's
//! id), SDK keys stored as SHA-256 hashes, passwords as Argon2id hashes.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// The server master key. Never logged, never printed. Shared, not copied: the expanded cipher
/// is a kilobyte, and the state every request handler receives holds one.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Arc<Aes256Gcm>,
    /// What keys for other purposes are derived from (see [`MasterKey::derive`]).
    derivation: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// From base64 of 32 bytes.
    pub fn from_base64(b64: &str) -> Result<Self> {
        let bytes = STANDARD
            .decode(b64.trim())
            .map_err(|_| Error::Invalid("the master key must be base64 of 32 bytes".into()))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::Invalid("the master key must be base64 of 32 bytes".into()))?;
        Ok(Self::from_bytes(arr))
    }

    pub fn generate() -> (Self, String) {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let b64 = STANDARD.encode(bytes);
        (Self::from_bytes(bytes), b64)
    }

    fn from_bytes(bytes: [u8; 32]) -> Self {
        Self {
            cipher: Arc::new(Aes256Gcm::new(&bytes.into())),
            derivation: hmac_sha256(&bytes, b"deadbolt key derivation"),
        }
    }

    /// A key for `purpose`, the same in every process started with this master key (every
    /// replica, and the server after a restart) and unrelated to the key of any other purpose:
    /// HMAC-SHA256 under the master key, of the purpose's name.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        hmac_sha256(&self.derivation, purpose.as_bytes())
    }

    /// Reads the key file, or creates it (mode 0600) when it does not exist.
    pub fn load_or_create_file(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(s) => {
                warn_if_readable_by_others(path);
                Self::from_base64(&s).map_err(|_| {
                    Error::Invalid(format!(
                        "{} does not hold a valid master key",
                        path.display()
                    ))
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (key, b64) = Self::generate();
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                match opts.open(path) {
                    Ok(mut f) => {
                        f.write_all(b64.as_bytes())
                            .and_then(|_| f.sync_all())
                            .map_err(|e| {
                                Error::Invalid(format!("cannot write {}: {e}", path.display()))
                            })?;
                        tracing::info!(path = %path.display(), "created a new master key file");
                        Ok(key)
                    }
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create_file(path)
                    }
                    Err(e) => Err(Error::Invalid(format!(
                        "cannot create {}: {e}",
                        path.display()
                    ))),
                }
            }
            Err(e) => Err(Error::Invalid(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Encrypts `secret`, bound to `key_id` so a ciphertext cannot be moved to another key's row.
    pub fn encrypt(&self, key_id: &str, secret: &[u8]) -> Result<String> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: key_id.as_bytes(),
                },
            )
            .map_err(|_| Error::Unavailable("encryption failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(format!("v1:{}", STANDARD.encode(out)))
    }

    pub fn decrypt(&self, key_id: &str, stored: &str) -> Result<Vec<u8>> {
        let fail = || {
            Error::Unavailable(format!(
                "signing key {key_id} cannot be decrypted with this master key"
            ))
        };
        let raw = STANDARD
            .decode(stored.strip_prefix("v1:").ok_or_else(fail)?)
            .map_err(|_| fail())?;
        if raw.len() < 12 + 16 {
            return Err(fail());
        }
        let (nonce, ct) = raw.split_at(12);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: key_id.as_bytes(),
                },
            )
            .map_err(|_| fail())
    }
}

pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the master key file is readable by others: chmod 600 it");
        }
    }
}
#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

/// A new signing key: 32 random bytes, as the base64 the portal and CLI show once.
pub fn new_signing_secret() -> (Vec<u8>, String) {
    let mut bytes = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let b64 = STANDARD.encode(&bytes);
    (bytes, b64)
}

/// A new SDK key secret and the hash stored for it.
pub fn new_sdk_secret() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    let hash = sdk_hash(&secret);
    (secret, hash)
}

/// What the store keeps of a session id, emailed-link token or pairing code: its SHA-256 in hex,
/// so that a read of the store does not hand out working tokens.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

pub fn sdk_hash(secret: &str) -> String {
    STANDARD.encode(Sha256::digest(secret.as_bytes()))
}

/// Compares a presented SDK secret with a stored hash in constant time.
pub fn sdk_secret_matches(secret: &str, stored_hash: &str) -> bool {
    sdk_hash(secret)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

/// An SDK key as handed out: `<id>.<secret>`.
pub fn split_sdk_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.trim().split_once('.')?;
    (!id.is_empty() && !secret.is_empty() && id.len() <= 64 && secret.len() <= 128)
        .then_some((id, secret))
}

pub fn hash_password(password: &str) -> Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    if password.chars().count() < 10 {
        return Err(Error::Invalid(
            "a password needs at least 10 characters".into(),
        ));
    }
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Invalid(format!("cannot hash password: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_round_trips_and_is_bound_to_the_key_id() {
        let (mk, _) = MasterKey::generate();
        let enc = mk.encrypt("k1", b"secret bytes").unwrap();
        assert!(!enc.contains("secret"));
        assert_eq!(mk.decrypt("k1", &enc).unwrap(), b"secret bytes");
        assert!(mk.decrypt("k2", &enc).is_err(), "moved to another row");
        let (other, _) = MasterKey::generate();
        assert!(other.decrypt("k1", &enc).is_err(), "another master key");
        assert!(mk.decrypt("k1", "v1:AAAA").is_err());
        assert!(mk.decrypt("k1", "garbage").is_err());
        assert_ne!(
            mk.encrypt("k1", b"x").unwrap(),
            mk.encrypt("k1", b"x").unwrap(),
            "fresh nonce each time"
        );
    }

    #[test]
    fn derived_keys_depend_on_the_master_key_and_the_purpose_only() {
        let (mk, b64) = MasterKey::generate();
        let again = MasterKey::from_base64(&b64).unwrap();
        assert_eq!(mk.derive("throttle"), again.derive("throttle"));
        assert_ne!(mk.derive("throttle"), mk.derive("device cookies"));
        assert_ne!(
            mk.derive("throttle"),
            MasterKey::generate().0.derive("throttle")
        );
    }

    #[test]
    fn master_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.key");
        let a = MasterKey::load_or_create_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let b = MasterKey::load_or_create_file(&path).unwrap();
        let enc = a.encrypt("k", b"v").unwrap();
        assert_eq!(b.decrypt("k", &enc).unwrap(), b"v");
        std::fs::write(&path, "not a key").unwrap();
        assert!(MasterKey::load_or_create_file(&path).is_err());
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
    }

    #[test]
    fn sdk_secrets_hash_and_compare() {
        let (secret, hash) = new_sdk_secret();
        assert!(sdk_secret_matches(&secret, &hash));
        assert!(!sdk_secret_matches("other", &hash));
        assert!(!hash.contains(&secret));
        assert_eq!(split_sdk_token("id.sec"), Some(("id", "sec")));
        assert_eq!(split_sdk_token("nodot"), None);
        assert_eq!(split_sdk_token(".x"), None);
    }

    #[test]
    fn passwords_use_argon2id() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong horse battery", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(hash_password("short").is_err());
    }
}
