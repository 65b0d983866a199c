//! Query (frontend, 'Q'): a simple-protocol query string, possibly several
//! statements separated by semicolons.

use bytes::BytesMut;

use super::{CodecError, Message, Reader, put_cstr};

/// A simple-protocol query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub sql: String,
}

impl Query {
    /// The SQL text of a Query payload without copying it.
    pub fn sql_of(body: &[u8]) -> Result<&str, CodecError> {
        let mut r = Reader::new(b'Q', body);
        let sql = r.cstr()?;
        r.finish()?;
        Ok(sql)
    }
}

impl Message for Query {
    const TAG: u8 = b'Q';

    fn encode_body(&self, buf: &mut BytesMut) {
        put_cstr(buf, self.sql.as_bytes());
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        Ok(Query {
            sql: Query::sql_of(body)?.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let q = Query {
            sql: "select 1; select 'é'".into(),
        };
        let bytes = q.to_bytes();
        assert_eq!(bytes[0], b'Q');
        assert_eq!(Query::decode(&bytes).unwrap(), q);
    }

    #[test]
    fn missing_terminator_is_an_error() {
        assert_eq!(
            Query::decode(&[b'Q', 0, 0, 0, 5, b'x']),
            Err(CodecError::MissingNul { tag: b'Q' })
        );
    }
}
