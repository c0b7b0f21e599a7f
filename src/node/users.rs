//! Who the authenticated clients of a worker are: the identity their
//! connection token proved, from the upgrade until they leave, and when
//! each token expires. Anonymous clients have no entry, so they cost
//! nothing here; both maps hold at most one entry per client.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::ids::ConnKey;

/// What a valid connection token says about its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`.
    pub user: Arc<str>,
    /// The token's `channels` claim: the full names (`private:x`) of the
    /// private channels this client may join.
    pub private: Box<[Box<str>]>,
    /// The token's `exp`, in seconds since the Unix epoch.
    pub expires: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Users {
    identities: HashMap<ConnKey, Identity>,
    /// (exp, client) of every client whose token expires: the earliest
    /// first, so the next expiry is one look.
    expiries: BTreeSet<(u64, ConnKey)>,
}

impl Users {
    /// A client joined with a valid token. A key already known (it cannot
    /// be: keys are reused only after `leave`) is replaced, its old
    /// expiry with it.
    pub fn join(&mut self, key: ConnKey, identity: Identity) {
        self.leave(key);
        if let Some(exp) = identity.expires {
            self.expiries.insert((exp, key));
        }
        self.identities.insert(key, identity);
    }

    /// A client left: its identity and its expiry go with it.
    pub fn leave(&mut self, key: ConnKey) -> Option<Identity> {
        let identity = self.identities.remove(&key)?;
        if let Some(exp) = identity.expires {
            self.expiries.remove(&(exp, key));
        }
        Some(identity)
    }

    pub fn get(&self, key: ConnKey) -> Option<&Identity> {
        self.identities.get(&key)
    }

    /// Authenticated clients.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    /// Clients with an expiry still ahead of them (or due, not yet taken).
    #[cfg(test)]
    pub fn expiring(&self) -> usize {
        self.expiries.len()
    }

    /// The earliest `exp` of a client still here, in Unix seconds.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiries.first().map(|&(exp, _)| exp)
    }

    /// The clients whose token expired at `now_ms` (milliseconds since the
    /// Unix epoch): `exp` is the first moment a token is no longer valid,
    /// so a token expires once `now_ms` reaches `exp` seconds, not before.
    /// Their expiries are taken; their identities stay until they leave.
    pub fn take_expired(&mut self, now_ms: u64) -> Vec<ConnKey> {
        let mut expired = Vec::new();
        while let Some(&(exp, key)) = self.expiries.first() {
            if exp.saturating_mul(1000) > now_ms {
                break;
            }
            self.expiries.pop_first();
            expired.push(key);
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(user: &str, expires: Option<u64>) -> Identity {
        Identity {
            user: user.into(),
            private: vec!["private:team".into()].into_boxed_slice(),
            expires,
        }
    }

    #[test]
    fn a_client_is_known_from_join_until_it_leaves() {
        let mut users = Users::default();
        assert!(users.get(ConnKey(1)).is_none());
        users.join(ConnKey(1), identity("alice", None));
        assert_eq!(&*users.get(ConnKey(1)).unwrap().user, "alice");
        assert_eq!(&*users.get(ConnKey(1)).unwrap().private[0], "private:team");
        assert_eq!(users.len(), 1);
        assert_eq!(users.leave(ConnKey(1)).unwrap().user.as_ref(), "alice");
        assert!(users.get(ConnKey(1)).is_none());
        assert!(users.leave(ConnKey(1)).is_none(), "once");
        assert_eq!(users.len(), 0);
    }

    #[test]
    fn expiries_come_due_in_order_exactly_at_exp() {
        let mut users = Users::default();
        users.join(ConnKey(1), identity("a", Some(20)));
        users.join(ConnKey(2), identity("b", Some(10)));
        users.join(ConnKey(3), identity("c", None));
        assert_eq!(users.next_expiry(), Some(10));
        assert!(users.take_expired(9_999).is_empty(), "not before exp");
        assert_eq!(users.take_expired(10_000), [ConnKey(2)]);
        assert_eq!(users.next_expiry(), Some(20));
        assert_eq!(users.take_expired(60_000), [ConnKey(1)]);
        assert_eq!(users.next_expiry(), None, "c never expires");
        assert_eq!(users.len(), 3, "identities stay until the clients leave");
    }

    #[test]
    fn a_client_that_leaves_leaves_no_expiry_behind() {
        let mut users = Users::default();
        users.join(ConnKey(1), identity("a", Some(10)));
        users.leave(ConnKey(1));
        assert_eq!((users.expiring(), users.next_expiry()), (0, None));
        users.join(ConnKey(1), identity("a", Some(10)));
        users.join(ConnKey(1), identity("b", Some(30)));
        assert_eq!(
            users.expiring(),
            1,
            "a key joined again replaces its expiry"
        );
        assert_eq!(users.next_expiry(), Some(30));
    }
}
