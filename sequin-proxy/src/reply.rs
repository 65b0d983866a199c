//! The client's answer to an intercepted statement, rendered from the
//! interceptor's [`Reply`]s: the interceptor speaks in rows and errors, the
//! proxy in the wire protocol.
//!
//! - Simple protocol: per statement, its notices, RowDescription (when it
//!   has columns), DataRows and CommandComplete (EmptyQueryResponse for an
//!   empty query), or its ErrorResponse, which ends the answer.
//! - Extended protocol: no RowDescription (the client's Describe had it);
//!   at most the Execute's `max_rows` rows, then PortalSuspended, and the
//!   rest is kept for the portal's next Execute. An executed portal is
//!   remembered either way ([`Portals`]): a later Execute of it is answered
//!   from here (the rows still owed, or its tag again, as Postgres answers)
//!   and never reaches the interceptor, so the write happens once.

use std::collections::VecDeque;

use bytes::BytesMut;

use crate::codec::{CommandComplete, DataRow, EmptyQueryResponse, Message, PortalSuspended};
use crate::interceptor::{Intercepted, Protocol, QueryResult, Reply};

/// Most executed portals remembered per session.
const PORTALS_MAX: usize = 64;

/// The portals of one session the interceptor answered, by portal id
/// ([`Intercepted::portal_id`]), with the rows still owed after a
/// row-limited Execute.
#[derive(Debug, Default)]
pub(crate) struct Portals {
    executed: VecDeque<(u64, Owed)>,
}

/// What a portal still owes its client.
#[derive(Debug)]
struct Owed {
    rows: Vec<DataRow>,
    tag: String,
}

impl Portals {
    /// The answer to a later Execute of a portal answered before, if `id`
    /// is one.
    pub(crate) fn replay(&mut self, id: u64) -> Option<Reply> {
        let at = self.executed.iter().position(|(p, _)| *p == id)?;
        let (_, owed) = self.executed.remove(at)?;
        Some(Reply::Done(QueryResult {
            rows: owed.rows,
            command_tag: owed.tag,
            ..QueryResult::default()
        }))
    }

    fn remember(&mut self, id: u64, owed: Owed) {
        if self.executed.len() >= PORTALS_MAX {
            self.executed.pop_front();
        }
        self.executed.push_back((id, owed));
    }
}

/// Encodes the answer to `st` into `out`; returns whether it ends in an
/// error.
pub(crate) fn render(
    replies: Vec<Reply>,
    st: &Intercepted,
    portals: &mut Portals,
    out: &mut BytesMut,
) -> bool {
    for reply in replies {
        match reply {
            Reply::Failed(e) => {
                e.encode(out);
                return true;
            }
            Reply::Done(r) => match st.protocol {
                Protocol::Simple => statement(r, out),
                Protocol::Extended => portal(r, st, portals, out),
            },
        }
    }
    false
}

/// One statement's result in the simple protocol.
fn statement(r: QueryResult, out: &mut BytesMut) {
    for n in &r.notices {
        n.encode(out);
    }
    if !r.columns.fields.is_empty() {
        r.columns.encode(out);
    }
    for row in &r.rows {
        row.encode(out);
    }
    complete(r.command_tag, out);
}

/// The executed portal's result, at most the Execute's row limit of rows.
fn portal(mut r: QueryResult, st: &Intercepted, portals: &mut Portals, out: &mut BytesMut) {
    for n in &r.notices {
        n.encode(out);
    }
    let limit = usize::try_from(st.max_rows).unwrap_or(0);
    let rest = if limit > 0 && r.rows.len() > limit {
        r.rows.split_off(limit)
    } else {
        Vec::new()
    };
    for row in &r.rows {
        row.encode(out);
    }
    if rest.is_empty() {
        complete(r.command_tag.clone(), out);
    } else {
        PortalSuspended.encode(out);
    }
    portals.remember(
        st.portal_id,
        Owed {
            rows: rest,
            tag: r.command_tag,
        },
    );
}

fn complete(tag: String, out: &mut BytesMut) {
    if tag.is_empty() {
        EmptyQueryResponse.encode(out);
    } else {
        CommandComplete { tag }.encode(out);
    }
}
