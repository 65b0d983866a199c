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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::codec::{ErrorResponse, FieldDescription, RowDescription};

    fn execute(max_rows: i32) -> Intercepted {
        Intercepted {
            protocol: Protocol::Extended,
            sql: "insert into s.t (id) values ('a'), ('b') returning id".into(),
            invalid_utf8: false,
            classification: Arc::default(),
            statement_name: Some(String::new()),
            param_types: Vec::new(),
            bind: None,
            max_rows,
            portal_id: 7,
        }
    }

    fn result() -> QueryResult {
        QueryResult {
            columns: RowDescription {
                fields: vec![FieldDescription::new("id", 25)],
            },
            rows: vec![
                DataRow::from_text([Some("a")]),
                DataRow::from_text([Some("b")]),
            ],
            command_tag: "INSERT 0 2".into(),
            notices: Vec::new(),
        }
    }

    /// The message tags of an answer.
    fn tags(out: &BytesMut) -> Vec<u8> {
        let mut tags = Vec::new();
        let mut at = 0;
        while at < out.len() {
            tags.push(out[at]);
            let len = u32::from_be_bytes(out[at + 1..at + 5].try_into().unwrap()) as usize;
            at += 1 + len;
        }
        tags
    }

    #[test]
    fn simple_protocol_gets_columns_rows_and_tag_and_stops_at_an_error() {
        let mut st = execute(0);
        st.protocol = Protocol::Simple;
        let mut out = BytesMut::new();
        let failed = render(
            vec![
                Reply::Done(result()),
                Reply::Failed(ErrorResponse::new("ERROR", "22012", "division by zero")),
                Reply::Done(result()),
            ],
            &st,
            &mut Portals::default(),
            &mut out,
        );
        assert!(failed);
        assert_eq!(tags(&out), b"TDDCE");
    }

    #[test]
    fn a_row_limit_suspends_the_portal_and_its_next_execute_gets_the_rest() {
        let mut portals = Portals::default();
        let mut out = BytesMut::new();
        assert!(!render(
            vec![Reply::Done(result())],
            &execute(1),
            &mut portals,
            &mut out
        ));
        assert_eq!(tags(&out), b"Ds", "no RowDescription, one row, suspended");
        let rest = portals.replay(7).expect("the portal owes a row");
        let mut out = BytesMut::new();
        render(vec![rest], &execute(1), &mut portals, &mut out);
        assert_eq!(tags(&out), b"DC");
        assert!(out.ends_with(b"INSERT 0 2\0"));
        // Executed again: its tag again, no rows, and never the interceptor.
        let again = portals.replay(7).expect("an executed portal is remembered");
        let mut out = BytesMut::new();
        render(vec![again], &execute(0), &mut portals, &mut out);
        assert_eq!(tags(&out), b"C");
        assert!(
            portals.replay(8).is_none(),
            "another portal is not answered"
        );
    }
}
