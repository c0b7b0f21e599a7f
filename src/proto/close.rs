//! WebSocket close codes (RFC 6455 7.4) and the rules for codes a peer sends.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCode(pub u16);

impl CloseCode {
    pub const NORMAL: CloseCode = CloseCode(1000);
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// Ours: the history no longer holds a message a client's replay still
    /// needed; resuming from what it received tells it where it stands.
    pub const REPLAY_LOST: CloseCode = CloseCode(4002);
    /// Ours: the client's connection token reached its `exp`.
    pub const TOKEN_EXPIRED: CloseCode = CloseCode(4001);

    /// Whether a peer may put this code on the wire. 1005, 1006 and 1015 are
    /// reserved for reporting, 1004 and 1016-2999 are unassigned, and codes
    /// under 1000 or from 5000 up are not defined at all.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// The short text that goes with a close this server initiates.
    pub fn reason(self) -> &'static str {
        match self.0 {
            1000 => "normal closure",
            1001 => "going away",
            1002 => "protocol error",
            1007 => "invalid payload",
            1008 => "policy violation",
            1009 => "message too big",
            _ => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_validity_follows_the_registry() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            assert!(CloseCode(ok).is_valid_on_wire(), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode(bad).is_valid_on_wire(), "{bad}");
        }
    }
}
