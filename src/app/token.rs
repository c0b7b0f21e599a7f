//! Connection tokens: a JWT (RFC 7519) signed with HMAC-SHA256 under the
//! server's secret, checked before a `/ws` upgrade. Only what wsnotify
//! needs: the compact form (three base64url parts), `alg` exactly `HS256`,
//! and the claims `sub`, `exp`, `nbf` and `channels`. Anything else about
//! the token is refused, never guessed.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::proto::http::Request;

/// The longest `sub` accepted, in bytes: it becomes the user id and the
/// channel `user:ID`.
pub const MAX_SUBJECT_BYTES: usize = 128;

/// What a valid token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `sub`: the user id, 1 to 128 bytes.
    pub sub: String,
    /// `exp`, in milliseconds since the Unix epoch: the first moment the
    /// token is no longer valid.
    pub expires_ms: Option<u64>,
    /// `channels`: the full names of the private channels the holder may
    /// join, as the token lists them.
    pub channels: Vec<String>,
}

impl Claims {
    /// `exp` in whole seconds, rounded up: a fractional `exp` is never
    /// acted on before it.
    pub fn expires_s(&self) -> Option<u64> {
        self.expires_ms.map(|ms| ms.div_ceil(1000))
    }
}

/// Why a token, or its absence, is refused (answered 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// `--require-token`, and the request has none.
    Missing,
    /// A token was given twice (the query and the header, or two queries).
    Ambiguous,
    /// A token, while no secret is configured to check it.
    NoSecret,
    /// Not three base64url parts of JSON objects.
    Malformed(&'static str),
    /// The header's `alg` is not `HS256`.
    Algorithm,
    /// The signature does not match.
    Signature,
    /// A claim missing or of the wrong kind.
    Claim(&'static str),
    /// `exp` has passed.
    Expired,
    /// `nbf` is still ahead.
    NotYetValid,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Missing => f.write_str("a token is required"),
            TokenError::Ambiguous => f.write_str("more than one token given"),
            TokenError::NoSecret => f.write_str("tokens are not accepted: no token secret is set"),
            TokenError::Malformed(why) => write!(f, "malformed token: {why}"),
            TokenError::Algorithm => f.write_str("token algorithm must be HS256"),
            TokenError::Signature => f.write_str("invalid token signature"),
            TokenError::Claim(why) => write!(f, "invalid token claims: {why}"),
            TokenError::Expired => f.write_str("token expired"),
            TokenError::NotYetValid => f.write_str("token not valid yet (nbf)"),
        }
    }
}

impl std::error::Error for TokenError {}

/// Who connects to `/ws`: `Ok(None)` for an anonymous client (no token,
/// and none required), the claims of a valid token, or why the upgrade is
/// refused. The token comes from `?token=` (browsers cannot set headers
/// on a WebSocket) or `Authorization: Bearer`; given more than once, it
/// is refused rather than one of them picked. Another `Authorization`
/// scheme (a proxy's Basic) is not a token.
pub fn authenticate(
    request: &Request,
    secret: Option<&[u8]>,
    required: bool,
    now_ms: u64,
) -> Result<Option<Claims>, TokenError> {
    let from_query = request
        .query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.strip_prefix("token="));
    let from_header = request
        .header_all("authorization")
        .filter_map(|value| std::str::from_utf8(value).ok())
        .filter_map(bearer);
    let mut given = from_query.chain(from_header);
    let token = match (given.next(), given.next()) {
        (None, _) if required => return Err(TokenError::Missing),
        (None, _) => return Ok(None),
        (Some(_), Some(_)) => return Err(TokenError::Ambiguous),
        (Some(token), None) => token,
    };
    let secret = secret.ok_or(TokenError::NoSecret)?;
    verify(token, secret, now_ms).map(Some)
}

/// The credentials of an `Authorization: Bearer` value (the scheme is
/// case-insensitive, RFC 7235).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

/// Checks `token` against `secret` at `now_ms` (ms since the Unix epoch).
/// The signature is checked before any claim is read, so nothing the
/// holder wrote is interpreted unless the secret's owner signed it.
pub fn verify(token: &str, secret: &[u8], now_ms: u64) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(header_part), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "expected three parts separated by dots",
        ));
    };
    let header = object(
        header_part,
        (
            "the header is not base64url",
            "the header is not a JSON object",
        ),
    )?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(TokenError::Algorithm);
    }
    if header.contains_key("crit") {
        return Err(TokenError::Malformed(
            "critical header extensions are not supported",
        ));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed("the signature is not base64url"))?;
    let signed = &token[..header_part.len() + 1 + payload.len()];
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(signed.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| TokenError::Signature)?;
    let payload = object(
        payload,
        (
            "the payload is not base64url",
            "the payload is not a JSON object",
        ),
    )?;
    claims(&payload, now_ms)
}

/// A base64url part holding a JSON object; the errors say which part.
fn object(
    part: &str,
    (not_base64, not_json): (&'static str, &'static str),
) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(not_base64))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::Malformed(not_json)),
    }
}

fn claims(payload: &Map<String, Value>, now_ms: u64) -> Result<Claims, TokenError> {
    let sub = match payload.get("sub") {
        None | Some(Value::Null) => return Err(TokenError::Claim("sub is missing")),
        Some(Value::String(sub)) if sub.is_empty() => {
            return Err(TokenError::Claim("sub is empty"))
        }
        Some(Value::String(sub)) if sub.len() > MAX_SUBJECT_BYTES => {
            return Err(TokenError::Claim("sub is longer than 128 bytes"))
        }
        Some(Value::String(sub)) => sub.clone(),
        Some(_) => return Err(TokenError::Claim("sub is not a string")),
    };
    let expires_ms = moment(payload, "exp", "exp is not a number")?;
    if expires_ms.is_some_and(|exp| now_ms >= exp) {
        return Err(TokenError::Expired);
    }
    let not_before_ms = moment(payload, "nbf", "nbf is not a number")?;
    if not_before_ms.is_some_and(|nbf| now_ms < nbf) {
        return Err(TokenError::NotYetValid);
    }
    let channels = match payload.get("channels") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or(TokenError::Claim(
                "channels holds something other than strings",
            ))?,
        Some(_) => return Err(TokenError::Claim("channels is not an array")),
    };
    Ok(Claims {
        sub,
        expires_ms,
        channels,
    })
}

/// A NumericDate claim (seconds since the epoch, possibly fractional) in
/// milliseconds; one before the epoch is the epoch.
fn moment(
    payload: &Map<String, Value>,
    name: &str,
    not_a_number: &'static str,
) -> Result<Option<u64>, TokenError> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let seconds = n.as_f64().ok_or(TokenError::Claim(not_a_number))?;
            Ok(Some((seconds.max(0.0) * 1000.0).min(u64::MAX as f64) as u64))
        }
        Some(_) => Err(TokenError::Claim(not_a_number)),
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use serde_json::json;

    pub const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW_MS: u64 = 1_700_000_000_000;

    /// A token with this header and payload, signed with `secret`.
    pub fn mint_with(header: &Value, payload: &Value, secret: &[u8]) -> String {
        let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
        let signed = format!("{}.{}", encode(header), encode(payload));
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(signed.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signed}.{signature}")
    }

    /// An HS256 token with this payload, signed with the tests' secret.
    pub fn mint(payload: &Value) -> String {
        mint_with(&json!({"alg": "HS256", "typ": "JWT"}), payload, SECRET)
    }

    fn check(token: &str) -> Result<Claims, TokenError> {
        verify(token, SECRET, NOW_MS)
    }

    #[test]
    fn a_good_token_gives_its_claims() {
        let token = mint(&json!({
            "sub": "alice",
            "exp": 1_700_000_060,
            "nbf": 1_700_000_000,
            "channels": ["private:team", "private:ops"],
            "iat": 1, "custom": {"ignored": true},
        }));
        let claims = check(&token).unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.expires_ms, Some(1_700_000_060_000));
        assert_eq!(claims.expires_s(), Some(1_700_000_060));
        assert_eq!(claims.channels, ["private:team", "private:ops"]);
        let bare = check(&mint(&json!({"sub": "bob"}))).unwrap();
        assert_eq!((bare.expires_ms, bare.channels.len()), (None, 0));
    }

    #[test]
    fn a_signature_under_another_secret_or_over_other_bytes_is_refused() {
        let other = mint_with(
            &json!({"alg": "HS256"}),
            &json!({"sub": "a"}),
            b"another secret, also 32 bytes long",
        );
        assert_eq!(check(&other), Err(TokenError::Signature));
        let token = mint(&json!({"sub": "alice"}));
        let (signed, _) = token.rsplit_once('.').unwrap();
        let forged = mint(&json!({"sub": "admin"}));
        let forged_payload = forged.split('.').nth(1).unwrap();
        let header = signed.split('.').next().unwrap();
        let signature = token.rsplit('.').next().unwrap();
        let swapped = format!("{header}.{forged_payload}.{signature}");
        assert_eq!(check(&swapped), Err(TokenError::Signature));
        let truncated = &token[..token.len() - 3];
        assert_eq!(check(truncated), Err(TokenError::Signature));
        assert_eq!(check(&format!("{signed}.")), Err(TokenError::Signature));
    }

    #[test]
    fn only_hs256_is_accepted() {
        let payload = json!({"sub": "alice"});
        for header in [
            json!({"alg": "none"}),
            json!({"alg": "HS512"}),
            json!({"alg": "hs256"}),
            json!({"alg": "RS256"}),
            json!({"typ": "JWT"}),
            json!({"alg": ["HS256"]}),
        ] {
            let token = mint_with(&header, &payload, SECRET);
            assert_eq!(check(&token), Err(TokenError::Algorithm), "{header}");
        }
        // The classic forgery: alg none and no signature at all.
        let none = mint_with(&json!({"alg": "none"}), &payload, SECRET);
        let (unsigned, _) = none.rsplit_once('.').unwrap();
        assert_eq!(check(&format!("{unsigned}.")), Err(TokenError::Algorithm));
        let crit = mint_with(&json!({"alg": "HS256", "crit": ["exp"]}), &payload, SECRET);
        assert!(matches!(check(&crit), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn malformed_tokens_are_refused_before_the_signature() {
        let good = mint(&json!({"sub": "alice"}));
        let parts: Vec<&str> = good.split('.').collect();
        let b64 = |text: &str| URL_SAFE_NO_PAD.encode(text);
        let cases = [
            ("", "three parts"),
            ("abc", "three parts"),
            (&format!("{}.{}", parts[0], parts[1]), "three parts"),
            (&format!("{good}.x"), "three parts"),
            (
                &format!("!!.{}.{}", parts[1], parts[2]),
                "header is not base64url",
            ),
            (
                &format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
                "header is not base64url",
            ),
            (
                &format!("{}.{}.{}", b64("{"), parts[1], parts[2]),
                "header is not a JSON",
            ),
            (
                &format!("{}.{}.{}", b64("[]"), parts[1], parts[2]),
                "header is not a JSON",
            ),
            (
                &format!("{}.{}.%%", parts[0], parts[1]),
                "signature is not base64url",
            ),
        ];
        for (token, why) in cases {
            match check(token) {
                Err(TokenError::Malformed(text)) => assert!(text.contains(why), "{token}: {text}"),
                other => panic!("{token}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_signed_payload_that_is_not_json_or_not_base64_is_malformed() {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
        let sign = |payload: &str| {
            let signed = format!("{header}.{payload}");
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
            mac.update(signed.as_bytes());
            format!(
                "{signed}.{}",
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            )
        };
        assert_eq!(
            check(&sign("***")),
            Err(TokenError::Malformed("the payload is not base64url"))
        );
        assert_eq!(
            check(&sign(&URL_SAFE_NO_PAD.encode("not json"))),
            Err(TokenError::Malformed("the payload is not a JSON object"))
        );
        assert_eq!(
            check(&sign(&URL_SAFE_NO_PAD.encode("\"sub\""))),
            Err(TokenError::Malformed("the payload is not a JSON object"))
        );
    }

    #[test]
    fn the_subject_is_required_non_empty_and_at_most_128_bytes() {
        let claim = |payload: Value| check(&mint(&payload));
        assert_eq!(claim(json!({})), Err(TokenError::Claim("sub is missing")));
        assert_eq!(
            claim(json!({"sub": null})),
            Err(TokenError::Claim("sub is missing"))
        );
        assert_eq!(
            claim(json!({"sub": ""})),
            Err(TokenError::Claim("sub is empty"))
        );
        assert_eq!(
            claim(json!({"sub": 7})),
            Err(TokenError::Claim("sub is not a string"))
        );
        let long = "é".repeat(65);
        assert_eq!(
            claim(json!({"sub": long})),
            Err(TokenError::Claim("sub is longer than 128 bytes"))
        );
        let longest = "x".repeat(MAX_SUBJECT_BYTES);
        assert_eq!(claim(json!({"sub": longest})).unwrap().sub, longest);
    }

    #[test]
    fn exp_and_nbf_hold_to_the_second_without_leeway() {
        let at = |payload: Value, now_ms| verify(&mint(&payload), SECRET, now_ms);
        let exp = json!({"sub": "a", "exp": 1_700_000_000});
        assert!(at(exp.clone(), NOW_MS - 1).is_ok());
        assert_eq!(at(exp.clone(), NOW_MS), Err(TokenError::Expired));
        assert_eq!(at(exp, NOW_MS + 1), Err(TokenError::Expired));
        let nbf = json!({"sub": "a", "nbf": 1_700_000_000});
        assert_eq!(at(nbf.clone(), NOW_MS - 1), Err(TokenError::NotYetValid));
        assert!(at(nbf, NOW_MS).is_ok());
        let fractional = json!({"sub": "a", "exp": 1_700_000_000.5});
        let claims = at(fractional.clone(), NOW_MS + 499).unwrap();
        assert_eq!(claims.expires_s(), Some(1_700_000_001), "rounded up");
        assert_eq!(at(fractional, NOW_MS + 500), Err(TokenError::Expired));
        assert_eq!(
            at(json!({"sub": "a", "exp": -5}), NOW_MS),
            Err(TokenError::Expired)
        );
        for bad in [
            json!({"sub": "a", "exp": "soon"}),
            json!({"sub": "a", "nbf": true}),
        ] {
            assert!(
                matches!(at(bad.clone(), NOW_MS), Err(TokenError::Claim(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn channels_must_be_an_array_of_strings() {
        let claim = |channels: Value| check(&mint(&json!({"sub": "a", "channels": channels})));
        assert_eq!(
            claim(json!("private:team")),
            Err(TokenError::Claim("channels is not an array"))
        );
        assert_eq!(
            claim(json!({"private:team": true})),
            Err(TokenError::Claim("channels is not an array"))
        );
        assert_eq!(
            claim(json!(["private:team", 3])),
            Err(TokenError::Claim(
                "channels holds something other than strings"
            ))
        );
        assert_eq!(claim(json!([])).unwrap().channels.len(), 0);
    }

    fn request(target: &str, headers: &str) -> Request {
        let head = format!("GET {target} HTTP/1.1\r\n{headers}\r\n");
        match crate::proto::http::parse_head(head.as_bytes()) {
            crate::proto::http::Head::Complete { request, .. } => request,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_token_comes_from_the_query_or_a_bearer_header_once() {
        let token = mint(&json!({"sub": "alice"}));
        let who = |target: &str, headers: &str, required| {
            authenticate(&request(target, headers), Some(SECRET), required, NOW_MS)
                .map(|claims| claims.map(|c| c.sub))
        };
        let alice = Ok(Some("alice".to_string()));
        assert_eq!(who(&format!("/ws?token={token}"), "", false), alice);
        assert_eq!(
            who(&format!("/ws?since=1&token={token}&epoch=e"), "", false),
            alice
        );
        assert_eq!(
            who("/ws", &format!("Authorization: Bearer {token}\r\n"), false),
            alice
        );
        assert_eq!(
            who(
                "/ws",
                &format!("authorization: bearer  {token} \r\n"),
                false
            ),
            alice
        );
        assert_eq!(who("/ws", "", false), Ok(None), "anonymous");
        assert_eq!(
            who("/ws?x=token=1", "", false),
            Ok(None),
            "not the parameter"
        );
        assert_eq!(who("/ws", "Authorization: Basic dTpw\r\n", false), Ok(None));
        assert_eq!(who("/ws", "", true), Err(TokenError::Missing));
        assert_eq!(
            who("/ws", "Authorization: Basic dTpw\r\n", true),
            Err(TokenError::Missing)
        );
        let both = format!("Authorization: Bearer {token}\r\n");
        assert_eq!(
            who(&format!("/ws?token={token}"), &both, false),
            Err(TokenError::Ambiguous)
        );
        assert_eq!(
            who(&format!("/ws?token={token}&token={token}"), "", false),
            Err(TokenError::Ambiguous)
        );
        assert!(matches!(
            who("/ws?token=", "", false),
            Err(TokenError::Malformed(_))
        ));
        let anonymous = authenticate(&request("/ws", ""), None, false, NOW_MS);
        assert_eq!(anonymous, Ok(None));
        let unchecked = authenticate(
            &request(&format!("/ws?token={token}"), ""),
            None,
            false,
            NOW_MS,
        );
        assert_eq!(unchecked, Err(TokenError::NoSecret));
    }

    #[test]
    fn errors_read_clearly() {
        assert_eq!(TokenError::Expired.to_string(), "token expired");
        assert_eq!(
            TokenError::Malformed("expected three parts separated by dots").to_string(),
            "malformed token: expected three parts separated by dots"
        );
        assert_eq!(
            TokenError::NoSecret.to_string(),
            "tokens are not accepted: no token secret is set"
        );
    }
}
