//! The per-connection protocol state machine: which replies the server still
//! owes (simple and extended protocol, pipelining, errors that make the
//! server skip to the next Sync) and the transaction status reported by
//! ReadyForQuery. It looks only at message tags, so feeding it costs a
//! queue push or pop per message.
//!
//! The client-to-server side records what it forwards with
//! [`ProtocolState::client_sent`]; the server-to-client side reports each
//! reply with [`ProtocolState::server_sent`]. The session is *idle* when no
//! reply is owed: the moment the proxy may talk to the server itself.

use std::collections::VecDeque;

/// A client message that the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// Simple Query: answered by results and finally ReadyForQuery.
    Query,
    /// FunctionCall: answered by FunctionCallResponse and ReadyForQuery.
    FunctionCall,
    Parse,
    Bind,
    Describe,
    Execute,
    Close,
    /// Answered by ReadyForQuery.
    Sync,
}

impl Pending {
    /// The pending reply a client message tag creates, if any.
    pub fn for_client_tag(tag: u8) -> Option<Pending> {
        Some(match tag {
            b'Q' => Pending::Query,
            b'F' => Pending::FunctionCall,
            b'P' => Pending::Parse,
            b'B' => Pending::Bind,
            b'D' => Pending::Describe,
            b'E' => Pending::Execute,
            b'C' => Pending::Close,
            b'S' => Pending::Sync,
            _ => return None,
        })
    }

    fn ends_at_ready(self) -> bool {
        matches!(self, Pending::Query | Pending::FunctionCall | Pending::Sync)
    }
}

/// Protocol state of one session.
#[derive(Debug, Clone)]
pub struct ProtocolState {
    pending: VecDeque<Pending>,
    transaction_status: u8,
    /// The server hit an error in the extended protocol and ignores messages
    /// until the next Sync.
    discarding: bool,
    /// Inside a COPY sub-protocol (between Copy*Response and the end).
    in_copy: bool,
}

impl Default for ProtocolState {
    fn default() -> Self {
        ProtocolState {
            pending: VecDeque::with_capacity(16),
            transaction_status: b'I',
            discarding: false,
            in_copy: false,
        }
    }
}

impl ProtocolState {
    /// Records a message forwarded to the server.
    pub fn client_sent(&mut self, tag: u8) {
        if let Some(p) = Pending::for_client_tag(tag) {
            self.pending.push_back(p);
        }
    }

    /// Records a message the server sent.
    pub fn server_sent(&mut self, tag: u8, status: Option<u8>) {
        match tag {
            b'1' | b'2' | b'3' | b'n' => self.pop_if(|p| {
                matches!(
                    p,
                    Pending::Parse | Pending::Bind | Pending::Close | Pending::Describe
                )
            }),
            // RowDescription ends a Describe; inside a Query or Execute it
            // starts a result set.
            b'T' => self.pop_if(|p| p == Pending::Describe),
            b'C' | b'I' | b's' => {
                self.in_copy = false;
                self.pop_if(|p| p == Pending::Execute)
            }
            b'G' | b'H' | b'W' => self.in_copy = true,
            b'E' => {
                self.in_copy = false;
                match self.pending.front() {
                    // A simple query ends with ReadyForQuery even after an error.
                    Some(Pending::Query | Pending::FunctionCall) | None => {}
                    Some(_) => {
                        // The extended protocol skips everything up to Sync.
                        self.discarding = true;
                        while let Some(p) = self.pending.front() {
                            if p.ends_at_ready() {
                                break;
                            }
                            self.pending.pop_front();
                        }
                    }
                }
            }
            b'Z' => {
                self.discarding = false;
                self.in_copy = false;
                if let Some(s) = status {
                    self.transaction_status = s;
                }
                while let Some(p) = self.pending.pop_front() {
                    if p.ends_at_ready() {
                        break;
                    }
                }
            }
            _ => {}
        }
    }

    fn pop_if(&mut self, f: impl Fn(Pending) -> bool) {
        if self.pending.front().is_some_and(|p| f(*p)) {
            self.pending.pop_front();
        }
    }

    /// No reply is owed by the server.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Replies still owed, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = Pending> + '_ {
        self.pending.iter().copied()
    }

    /// `I` idle, `T` in a transaction block, `E` in a failed one.
    pub fn transaction_status(&self) -> u8 {
        self.transaction_status
    }

    /// The server is skipping messages until Sync.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    pub fn in_copy(&self) -> bool {
        self.in_copy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_client(s: &mut ProtocolState, tags: &[u8]) {
        for t in tags {
            s.client_sent(*t);
        }
    }

    fn feed_server(s: &mut ProtocolState, tags: &[u8]) {
        for t in tags {
            let status = (*t == b'Z').then_some(b'I');
            s.server_sent(*t, status);
        }
    }

    #[test]
    fn simple_query_with_several_results_ends_at_ready_for_query() {
        let mut s = ProtocolState::default();
        feed_client(&mut s, b"Q");
        feed_server(&mut s, b"TDDCTDC");
        assert!(!s.is_idle());
        feed_server(&mut s, b"Z");
        assert!(s.is_idle());
    }

    #[test]
    fn extended_pipeline_of_two_syncs() {
        let mut s = ProtocolState::default();
        feed_client(&mut s, b"PBDES");
        feed_client(&mut s, b"BES");
        feed_server(&mut s, b"12TDDC");
        assert_eq!(
            s.pending().collect::<Vec<_>>(),
            [
                Pending::Sync,
                Pending::Bind,
                Pending::Execute,
                Pending::Sync
            ]
        );
        feed_server(&mut s, b"Z2DC");
        assert_eq!(s.pending().collect::<Vec<_>>(), [Pending::Sync]);
        s.server_sent(b'Z', Some(b'T'));
        assert!(s.is_idle());
        assert_eq!(s.transaction_status(), b'T');
    }

    #[test]
    fn describe_statement_pops_on_row_description_or_no_data() {
        let mut s = ProtocolState::default();
        feed_client(&mut s, b"PDPD");
        feed_server(&mut s, b"1tT1tn");
        assert!(s.is_idle());
    }

    #[test]
    fn error_in_extended_protocol_discards_until_sync() {
        let mut s = ProtocolState::default();
        feed_client(&mut s, b"PBES");
        feed_server(&mut s, b"E");
        assert!(s.is_discarding());
        assert_eq!(s.pending().collect::<Vec<_>>(), [Pending::Sync]);
        // The client pipelined more after its Sync: those are answered.
        feed_client(&mut s, b"BES");
        s.server_sent(b'Z', Some(b'E'));
        assert!(!s.is_discarding());
        assert_eq!(s.transaction_status(), b'E');
        assert_eq!(
            s.pending().collect::<Vec<_>>(),
            [Pending::Bind, Pending::Execute, Pending::Sync]
        );
    }

    #[test]
    fn error_in_simple_query_waits_for_ready_for_query() {
        let mut s = ProtocolState::default();
        feed_client(&mut s, b"Q");
        feed_server(&mut s, b"E");
        assert!(!s.is_idle() && !s.is_discarding());
        feed_server(&mut s, b"Z");
        assert!(s.is_idle());
    }

    #[test]
    fn copy_in_and_out() {
        let mut s = ProtocolState::default();
        feed_client(&mut s, b"Q");
        feed_server(&mut s, b"G");
        assert!(s.in_copy());
        feed_client(&mut s, b"ddc");
        feed_server(&mut s, b"CZ");
        assert!(s.is_idle() && !s.in_copy());
        feed_client(&mut s, b"Q");
        feed_server(&mut s, b"HddcCZ");
        assert!(s.is_idle());
    }
}
