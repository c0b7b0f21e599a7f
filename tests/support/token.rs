//! Connection tokens for the tests, minted the way a user's backend would:
//! HS256 over the base64url (unpadded) header and claims.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// A token with any header, so tests can try the ones the server refuses.
pub fn mint_with(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let signed = format!("{}.{}", encode(header), encode(claims));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(signed.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signed}.{signature}")
}

/// A well-formed HS256 token with these claims.
pub fn mint(claims: &Value, secret: &[u8]) -> String {
    mint_with(&json!({"alg": "HS256", "typ": "JWT"}), claims, secret)
}
