//! Parse (frontend, 'P'): prepares a statement (named, or the unnamed one
//! when the name is empty) in the extended protocol.

use bytes::{BufMut, BytesMut};

use super::{CodecError, Message, Reader, put_cstr};

/// An extended-protocol Parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse {
    /// Statement name; empty for the unnamed statement.
    pub name: String,
    pub sql: String,
    /// Parameter type OIDs the client specified (0 = let the server infer).
    pub param_types: Vec<u32>,
}

impl Parse {
    /// The statement name and SQL text of a Parse payload without copying.
    pub fn name_and_sql(body: &[u8]) -> Result<(&str, &str), CodecError> {
        let mut r = Reader::new(b'P', body);
        Ok((r.cstr()?, r.cstr()?))
    }
}

impl Message for Parse {
    const TAG: u8 = b'P';

    fn encode_body(&self, buf: &mut BytesMut) {
        put_cstr(buf, self.name.as_bytes());
        put_cstr(buf, self.sql.as_bytes());
        buf.put_i16(self.param_types.len() as i16);
        for t in &self.param_types {
            buf.put_u32(*t);
        }
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(Self::TAG, body);
        let name = r.cstr()?.to_owned();
        let sql = r.cstr()?.to_owned();
        let n = r.count16("parameter type count")?;
        let mut param_types = Vec::with_capacity(n.min(body.len() / 4));
        for _ in 0..n {
            param_types.push(r.i32("parameter type")? as u32);
        }
        r.finish()?;
        Ok(Parse {
            name,
            sql,
            param_types,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = Parse {
            name: "s1".into(),
            sql: "insert into t values ($1, $2)".into(),
            param_types: vec![23, 0],
        };
        let bytes = p.to_bytes();
        assert_eq!(Parse::decode(&bytes).unwrap(), p);
        assert_eq!(
            Parse::name_and_sql(&bytes[5..]).unwrap(),
            ("s1", "insert into t values ($1, $2)")
        );
    }

    #[test]
    fn truncated_type_list_is_an_error() {
        let mut bytes = Parse {
            name: String::new(),
            sql: "select $1".into(),
            param_types: vec![25],
        }
        .to_bytes();
        bytes.truncate(bytes.len() - 2);
        let len = (bytes.len() - 1) as u32;
        bytes[1..5].copy_from_slice(&len.to_be_bytes());
        assert!(matches!(
            Parse::decode(&bytes),
            Err(CodecError::Truncated { .. })
        ));
    }
}
