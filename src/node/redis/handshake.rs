//! What a connection asks before it serves: the credentials, the database,
//! then its own part, the subscription or where the broadcast stream
//! stands. Each command is named for the log line of a refusal.

use super::script;
use super::side::Side;
use crate::config::RedisUrl;
use crate::proto::resp;
use crate::rand::Rng;

pub(super) fn commands(
    url: &RedisUrl,
    channel: &str,
    side: Side,
    rng: &mut Rng,
) -> Vec<(&'static str, Vec<u8>)> {
    let mut commands = Vec::with_capacity(3);
    let auth: Option<Vec<&[u8]>> = match (&url.username, &url.password) {
        (Some(user), password) => Some(vec![
            b"AUTH",
            user.as_bytes(),
            password.as_deref().unwrap_or("").as_bytes(),
        ]),
        (None, Some(password)) => Some(vec![b"AUTH", password.as_bytes()]),
        (None, None) => None,
    };
    if let Some(auth) = auth {
        commands.push(("AUTH", resp::command(&auth)));
    }
    if url.db != 0 {
        let db = url.db.to_string();
        commands.push(("SELECT", resp::command(&[b"SELECT", db.as_bytes()])));
    }
    commands.push(match side {
        Side::Subscriber => (
            "SUBSCRIBE",
            resp::command(&[b"SUBSCRIBE", channel.as_bytes()]),
        ),
        Side::Publisher => {
            // Becomes the epoch if Redis holds no stream yet.
            let candidate = format!("{:016x}", rng.next_u64());
            ("POSITION", script::position(channel, &candidate))
        }
    });
    commands
}
