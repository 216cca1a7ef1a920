//! One-time form tokens: a random nonce and its HMAC under the session's CSRF secret. Made for
//! every page a signed-in person is shown; checked and used up by the form extractors
//! (`csrf.rs`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

use crate::crypto::hmac_sha256;

/// A new one-time form token of the session whose CSRF secret is `session_csrf`.
pub(super) fn form_token(session_csrf: &str) -> String {
    let mut nonce = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let nonce = URL_SAFE_NO_PAD.encode(nonce);
    let mac = URL_SAFE_NO_PAD.encode(form_mac(session_csrf, &nonce));
    format!("{nonce}.{mac}")
}

pub(super) fn form_mac(session_csrf: &str, nonce: &str) -> [u8; 32] {
    hmac_sha256(session_csrf.as_bytes(), format!("form {nonce}").as_bytes())
}
