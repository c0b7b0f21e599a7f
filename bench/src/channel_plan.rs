//! `wsload channels`: who joins which channel, and the ledger of which
//! members have received each published message. No I/O here.

use std::io::Write as _;

/// Channel k is named `bench.<k>` (a plain name under every server's rule).
pub fn channel_name(out: &mut Vec<u8>, k: u32) {
    let _ = write!(out, "bench.{k}");
}

/// Connection i joins channels (i·J + j) mod C for j in 0..J: with N·J a
/// multiple of C every channel has N·J/C members, and a connection's J
/// channels are distinct (C ≥ J).
pub struct Plan {
    per_conn: usize,
    /// Per connection, J entries: (channel, the connection's index among
    /// that channel's members).
    joined: Vec<(u32, u32)>,
    /// Per channel, its members (connection ids) in index order.
    members: Vec<Vec<u32>>,
}

impl Plan {
    pub fn new(conns: usize, channels: u32, per_conn: usize) -> Result<Plan, String> {
        let c = channels as usize;
        if c == 0 || per_conn == 0 || c < per_conn {
            return Err(format!(
                "--channels ({channels}) must be at least --per-conn ({per_conn}) and above 0"
            ));
        }
        if conns * per_conn < c {
            return Err(format!(
                "{conns} connections × {per_conn} channels leave some of the {channels} channels without a member"
            ));
        }
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); c];
        let mut joined = Vec::with_capacity(conns * per_conn);
        for i in 0..conns {
            for j in 0..per_conn {
                let ch = (i * per_conn + j) % c;
                joined.push((ch as u32, members[ch].len() as u32));
                members[ch].push(i as u32);
            }
        }
        Ok(Plan {
            per_conn,
            joined,
            members,
        })
    }

    pub fn channels(&self) -> u32 {
        self.members.len() as u32
    }

    /// The channels connection `conn` joins.
    pub fn joined(&self, conn: usize) -> impl Iterator<Item = u32> + '_ {
        self.entries(conn).iter().map(|&(ch, _)| ch)
    }

    fn entries(&self, conn: usize) -> &[(u32, u32)] {
        &self.joined[conn * self.per_conn..(conn + 1) * self.per_conn]
    }

    pub fn members(&self, channel: u32) -> &[u32] {
        &self.members[channel as usize]
    }

    /// Connection `conn`'s index among `channel`'s members, if it joined.
    pub fn index_in(&self, conn: usize, channel: u32) -> Option<u32> {
        self.entries(conn)
            .iter()
            .find(|&&(ch, _)| ch == channel)
            .map(|&(_, idx)| idx)
    }

    /// The fewest and the most members of a channel.
    pub fn member_range(&self) -> (usize, usize) {
        let sizes = self.members.iter().map(Vec::len);
        (sizes.clone().min().unwrap_or(0), sizes.max().unwrap_or(0))
    }
}

/// What a receipt was.
#[derive(Debug, PartialEq, Eq)]
pub enum Receipt {
    /// The first copy of message `seq` at this member; `done` when it was
    /// the last member waited for.
    New {
        sent_at_us: u64,
        done: bool,
    },
    Duplicate,
}

/// Every published message (numbered from 1): its channel, when it was
/// sent, how many members still wait for it, and one bit per member.
pub struct Ledger {
    /// 64-bit words of member bits per message (the largest channel's).
    stride: usize,
    channel: Vec<u32>,
    sent_at_us: Vec<u64>,
    remaining: Vec<u32>,
    seen: Vec<u64>,
    /// Messages some member still waits for.
    pub open: usize,
}

impl Ledger {
    pub fn new(plan: &Plan) -> Ledger {
        let stride = plan.member_range().1.div_ceil(64).max(1);
        Ledger {
            stride,
            channel: vec![0],
            sent_at_us: vec![0],
            remaining: vec![0],
            seen: vec![0; stride],
            open: 0,
        }
    }

    /// Messages published so far.
    pub fn published(&self) -> u32 {
        (self.channel.len() - 1) as u32
    }

    /// Records the next message, to `channel` of `members` members, sent
    /// at `now_us`; returns its number.
    pub fn publish(&mut self, channel: u32, members: usize, now_us: u64) -> u32 {
        self.channel.push(channel);
        self.sent_at_us.push(now_us);
        self.remaining.push(members as u32);
        self.seen.resize(self.seen.len() + self.stride, 0);
        self.open += 1;
        self.published()
    }

    /// The channel of message `seq` (published).
    pub fn channel_of(&self, seq: u32) -> u32 {
        self.channel[seq as usize]
    }

    /// Message `seq` was sent again (at `now_us`): its latency counts from
    /// then.
    pub fn restamp(&mut self, seq: u32, now_us: u64) {
        self.sent_at_us[seq as usize] = now_us;
    }

    /// Message `seq` reached connection `conn`.
    pub fn receive(&mut self, plan: &Plan, conn: usize, seq: u32) -> Result<Receipt, String> {
        let i = seq as usize;
        if seq == 0 || i >= self.channel.len() {
            return Err(format!("message {seq} was never published"));
        }
        let channel = self.channel[i];
        let idx = plan.index_in(conn, channel).ok_or_else(|| {
            format!("message {seq} of channel bench.{channel} reached a connection that did not join it")
        })? as usize;
        let word = &mut self.seen[i * self.stride + idx / 64];
        let bit = 1u64 << (idx % 64);
        if *word & bit != 0 {
            return Ok(Receipt::Duplicate);
        }
        *word |= bit;
        self.remaining[i] -= 1;
        let done = self.remaining[i] == 0;
        if done {
            self.open -= 1;
        }
        Ok(Receipt::New {
            sent_at_us: self.sent_at_us[i],
            done,
        })
    }

    /// Deliveries published messages call for: the sum of their channels'
    /// members.
    pub fn expected(&self, plan: &Plan) -> u64 {
        self.channel[1..]
            .iter()
            .map(|&ch| plan.members(ch).len() as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_connections_evenly() {
        let plan = Plan::new(10_000, 1_000, 1).unwrap();
        assert_eq!(plan.member_range(), (10, 10));
        assert_eq!(plan.joined(1_234).collect::<Vec<_>>(), [234]);
        assert_eq!(
            plan.members(234),
            [234, 1_234, 2_234, 3_234, 4_234, 5_234, 6_234, 7_234, 8_234, 9_234]
        );
        assert_eq!(plan.index_in(1_234, 234), Some(1));
        assert_eq!(plan.index_in(1_234, 235), None);

        let plan = Plan::new(10_000, 1_000, 3).unwrap();
        assert_eq!(plan.member_range(), (30, 30));
        assert_eq!(plan.joined(333).collect::<Vec<_>>(), [999, 0, 1]);
        for conn in [0, 333, 9_999] {
            let chans: Vec<u32> = plan.joined(conn).collect();
            assert_eq!(chans.len(), 3);
            assert!(chans[0] != chans[1] && chans[1] != chans[2] && chans[0] != chans[2]);
            for ch in chans {
                let idx = plan.index_in(conn, ch).unwrap() as usize;
                assert_eq!(plan.members(ch)[idx], conn as u32);
            }
        }
    }

    #[test]
    fn refuses_channels_it_cannot_fill() {
        assert!(Plan::new(10, 100, 1).is_err());
        assert!(Plan::new(10, 2, 3).is_err());
        assert!(Plan::new(10, 0, 1).is_err());
        assert!(Plan::new(34, 100, 3).is_ok());
    }

    #[test]
    fn counts_each_member_once() {
        let plan = Plan::new(200, 2, 1).unwrap(); // 100 members each: two words
        let mut ledger = Ledger::new(&plan);
        let seq = ledger.publish(1, plan.members(1).len(), 7);
        assert_eq!((seq, ledger.open), (1, 1));
        assert_eq!(ledger.expected(&plan), 100);
        assert!(
            ledger.receive(&plan, 0, 1).is_err(),
            "conn 0 is in channel 0"
        );
        assert!(ledger.receive(&plan, 1, 2).is_err(), "never published");
        for (k, &conn) in plan.members(1).iter().enumerate() {
            let done = k == 99;
            assert_eq!(
                ledger.receive(&plan, conn as usize, 1),
                Ok(Receipt::New {
                    sent_at_us: 7,
                    done
                })
            );
        }
        assert_eq!(ledger.receive(&plan, 199, 1), Ok(Receipt::Duplicate));
        assert_eq!(ledger.open, 0);
        let seq = ledger.publish(0, plan.members(0).len(), 8);
        ledger.restamp(seq, 20);
        assert_eq!(ledger.channel_of(seq), 0);
        assert_eq!(
            ledger.receive(&plan, 0, seq),
            Ok(Receipt::New {
                sent_at_us: 20,
                done: false
            })
        );
    }

    #[test]
    fn names_channels() {
        let mut out = Vec::new();
        channel_name(&mut out, 42);
        assert_eq!(out, b"bench.42");
    }
}
