//! This worker's side of the mail between workers: taking what was posted
//! to it, and numbering the HTTP requests parked while another worker
//! answers for them.

use super::mailbox::Mail;
use super::process::Process;

#[derive(Debug, Default)]
pub struct MailRoom {
    next_ticket: u64,
}

impl MailRoom {
    /// Everything in worker `me`'s mailbox, in the order it was posted.
    pub fn take(&self, process: &Process, me: usize) -> Vec<Mail> {
        process.take_mail(me)
    }

    /// A number for a request that waits for another worker's answer.
    pub fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }
}
