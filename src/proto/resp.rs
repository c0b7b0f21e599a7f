//! RESP2, the Redis protocol: commands out, replies in, parsed incrementally
//! from a buffer that may hold a partial reply.

/// Replies larger than this are refused: nothing this server publishes comes
/// near it, and a corrupt length must not make us buffer without end.
pub const MAX_BULK: usize = 16 * 1024 * 1024;
const MAX_ARRAY: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespError(pub &'static str);

/// Encodes a command as an array of bulk strings.
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Parses one reply from the start of `buf`: `Ok(None)` if incomplete,
/// else the reply and the bytes it used.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
    parse_at(buf, 0, 0)
}

fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..end], at + end + 2))
}

fn number(text: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(RespError("bad number"))
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Reply, usize)>, RespError> {
    if depth > 4 {
        return Err(RespError("nesting too deep"));
    }
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((text, next)) = line(buf, at + 1) else {
        if buf.len() - at > 64 * 1024 {
            return Err(RespError("line too long"));
        }
        return Ok(None);
    };
    let used = |reply: Reply, end: usize| Ok(Some((reply, end - at)));
    match kind {
        b'+' => used(
            Reply::Simple(String::from_utf8_lossy(text).into_owned()),
            next,
        ),
        b'-' => used(
            Reply::Error(String::from_utf8_lossy(text).into_owned()),
            next,
        ),
        b':' => used(Reply::Integer(number(text)?), next),
        b'$' => {
            let len = number(text)?;
            if len < 0 {
                return used(Reply::Bulk(None), next);
            }
            let len = len as usize;
            if len > MAX_BULK {
                return Err(RespError("bulk string too large"));
            }
            if buf.len() < next + len + 2 {
                return Ok(None);
            }
            if &buf[next + len..next + len + 2] != b"\r\n" {
                return Err(RespError("bulk string not terminated"));
            }
            used(
                Reply::Bulk(Some(buf[next..next + len].to_vec())),
                next + len + 2,
            )
        }
        b'*' => {
            let len = number(text)?;
            if len < 0 {
                return used(Reply::Array(None), next);
            }
            if len as usize > MAX_ARRAY {
                return Err(RespError("array too large"));
            }
            let mut items = Vec::with_capacity(len as usize);
            let mut pos = next;
            for _ in 0..len {
                match parse_at(buf, pos, depth + 1)? {
                    None => return Ok(None),
                    Some((item, n)) => {
                        items.push(item);
                        pos += n;
                    }
                }
            }
            used(Reply::Array(Some(items)), pos)
        }
        _ => Err(RespError("unknown reply type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands() {
        assert_eq!(
            command(&[b"PUBLISH", b"ch", b"hi"]),
            b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$2\r\nhi\r\n"
        );
        assert_eq!(command(&[b"PING"]), b"*1\r\n$4\r\nPING\r\n");
    }

    #[test]
    fn parses_every_reply_kind() {
        assert_eq!(parse(b"+OK\r\n"), Ok(Some((Reply::Simple("OK".into()), 5))));
        assert_eq!(
            parse(b"-ERR no\r\n"),
            Ok(Some((Reply::Error("ERR no".into()), 9)))
        );
        assert_eq!(parse(b":42\r\n"), Ok(Some((Reply::Integer(42), 5))));
        assert_eq!(parse(b"$-1\r\n"), Ok(Some((Reply::Bulk(None), 5))));
        assert_eq!(
            parse(b"$3\r\nabc\r\n+x"),
            Ok(Some((Reply::Bulk(Some(b"abc".to_vec())), 9)))
        );
        assert_eq!(parse(b"*-1\r\n"), Ok(Some((Reply::Array(None), 5))));
    }

    #[test]
    fn parses_a_pubsub_message_split_anywhere() {
        let msg = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n";
        for cut in 0..msg.len() {
            assert_eq!(parse(&msg[..cut]), Ok(None), "cut at {cut}");
        }
        let expected = Reply::Array(Some(vec![
            Reply::Bulk(Some(b"message".to_vec())),
            Reply::Bulk(Some(b"ch".to_vec())),
            Reply::Bulk(Some(b"hello".to_vec())),
        ]));
        assert_eq!(parse(msg), Ok(Some((expected, msg.len()))));
    }

    #[test]
    fn rejects_garbage_and_huge_lengths() {
        assert!(parse(b"?x\r\n").is_err());
        assert!(parse(b":abc\r\n").is_err());
        assert!(parse(b"$99999999999\r\n").is_err());
        assert!(parse(b"$3\r\nabcXY").is_err());
        assert!(parse(b"*5000\r\n").is_err());
        assert!(parse(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n").is_err());
    }
}
