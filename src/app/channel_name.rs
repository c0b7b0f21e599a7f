//! Channel names: which names are valid, and which are reserved. A name is
//! 1 to 64 bytes of `A-Z a-z 0-9 _ - . :`. Two prefixes are reserved:
//! `user:ID`, the personal channel of user ID (ID is any token subject, so
//! it is exempt from the character rule; only its user joins it, at
//! connect), and `private:NAME`, joined only by a client whose token lists
//! the full name.

use std::fmt;

/// The longest channel name, in bytes (`user:` names aside).
pub const MAX_NAME_BYTES: usize = 64;

/// The longest user id (a token's `sub`), in bytes.
pub const MAX_USER_ID_BYTES: usize = 128;

pub const USER_PREFIX: &str = "user:";
pub const PRIVATE_PREFIX: &str = "private:";

/// What a valid name names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Anyone may join it.
    Public,
    /// `user:ID`: joined by user ID's connections only, at connect.
    User,
    /// `private:NAME`: joined only with the token's claim.
    Private,
}

/// Why a string is not a channel name (or not a user id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadName {
    Empty,
    TooLong,
    /// A byte outside `A-Z a-z 0-9 _ - . :`.
    BadCharacter,
    /// `private:` with nothing after it.
    NoPrivateName,
    EmptyUserId,
    UserIdTooLong,
}

impl fmt::Display for BadName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BadName::Empty => "empty channel name",
            BadName::TooLong => "channel name longer than 64 bytes",
            BadName::BadCharacter => {
                "channel name may only hold the characters A-Z a-z 0-9 _ - . :"
            }
            BadName::NoPrivateName => "private channel without a name",
            BadName::EmptyUserId => "empty user id",
            BadName::UserIdTooLong => "user id longer than 128 bytes",
        })
    }
}

/// Checks `name` and says what it names.
pub fn kind(name: &str) -> Result<Kind, BadName> {
    if let Some(id) = name.strip_prefix(USER_PREFIX) {
        check_user_id(id)?;
        return Ok(Kind::User);
    }
    if name.is_empty() {
        return Err(BadName::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(BadName::TooLong);
    }
    if !name.bytes().all(allowed) {
        return Err(BadName::BadCharacter);
    }
    match name.strip_prefix(PRIVATE_PREFIX) {
        Some("") => Err(BadName::NoPrivateName),
        Some(_) => Ok(Kind::Private),
        None => Ok(Kind::Public),
    }
}

/// A user id as a token's `sub` may be: non-empty, at most 128 bytes.
pub fn check_user_id(id: &str) -> Result<(), BadName> {
    if id.is_empty() {
        Err(BadName::EmptyUserId)
    } else if id.len() > MAX_USER_ID_BYTES {
        Err(BadName::UserIdTooLong)
    } else {
        Ok(())
    }
}

/// The personal channel of user `id`.
pub fn user_channel(id: &str) -> Result<String, BadName> {
    check_user_id(id)?;
    Ok(format!("{USER_PREFIX}{id}"))
}

fn allowed(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.' | b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_names_are_one_to_64_bytes_of_the_allowed_characters() {
        for name in ["a", "orders.42", "A-Z_0:9", &"x".repeat(64)] {
            assert_eq!(kind(name), Ok(Kind::Public), "{name}");
        }
        assert_eq!(kind(""), Err(BadName::Empty));
        assert_eq!(kind(&"x".repeat(65)), Err(BadName::TooLong));
        for name in ["a b", "é", "a/b", "a\"b", "a\nb", "*"] {
            assert_eq!(kind(name), Err(BadName::BadCharacter), "{name}");
        }
    }

    #[test]
    fn user_channels_take_any_id_of_up_to_128_bytes() {
        assert_eq!(kind("user:42"), Ok(Kind::User));
        assert_eq!(kind("user:jörg with spaces/\""), Ok(Kind::User));
        let long = format!("user:{}", "u".repeat(128));
        assert_eq!(kind(&long), Ok(Kind::User), "longer than 64 in all");
        assert_eq!(kind("user:"), Err(BadName::EmptyUserId));
        let longer = format!("user:{}", "u".repeat(129));
        assert_eq!(kind(&longer), Err(BadName::UserIdTooLong));
        assert_eq!(user_channel("ann").as_deref(), Ok("user:ann"));
        assert_eq!(user_channel(""), Err(BadName::EmptyUserId));
    }

    #[test]
    fn private_channels_follow_the_rule_and_need_a_name() {
        assert_eq!(kind("private:team"), Ok(Kind::Private));
        assert_eq!(kind("private:"), Err(BadName::NoPrivateName));
        assert_eq!(kind("private:a b"), Err(BadName::BadCharacter));
        assert_eq!(kind("privates"), Ok(Kind::Public));
        assert_eq!(kind("User:x"), Ok(Kind::Public), "prefixes are exact");
    }
}
