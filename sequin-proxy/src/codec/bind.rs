//! Bind (frontend, 'B'): binds parameter values to a prepared statement,
//! creating a portal.

use bytes::{BufMut, Bytes, BytesMut};

use super::{CodecError, Message, Reader, put_cstr, put_nullable};

/// An extended-protocol Bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Portal name; empty for the unnamed portal.
    pub portal: String,
    /// Statement name; empty for the unnamed statement.
    pub statement: String,
    /// Parameter format codes (0 text, 1 binary): none (all text), one (for
    /// all) or one per parameter.
    pub param_formats: Vec<i16>,
    /// Parameter values; `None` is NULL.
    pub params: Vec<Option<Bytes>>,
    /// Result column format codes, with the same none/one/each convention.
    pub result_formats: Vec<i16>,
}

impl Bind {
    /// The portal and statement names of a Bind payload without copying.
    pub fn portal_and_statement(body: &[u8]) -> Result<(&str, &str), CodecError> {
        let mut r = Reader::new(b'B', body);
        Ok((r.cstr()?, r.cstr()?))
    }

    /// The format of parameter `i` (0 text, 1 binary).
    pub fn param_format(&self, i: usize) -> i16 {
        match self.param_formats.len() {
            0 => 0,
            1 => self.param_formats[0],
            _ => self.param_formats.get(i).copied().unwrap_or(0),
        }
    }
}

impl Message for Bind {
    const TAG: u8 = b'B';

    fn encode_body(&self, buf: &mut BytesMut) {
        put_cstr(buf, self.portal.as_bytes());
        put_cstr(buf, self.statement.as_bytes());
        buf.put_i16(self.param_formats.len() as i16);
        for f in &self.param_formats {
            buf.put_i16(*f);
        }
        buf.put_i16(self.params.len() as i16);
        for p in &self.params {
            put_nullable(buf, p.as_deref());
        }
        buf.put_i16(self.result_formats.len() as i16);
        for f in &self.result_formats {
            buf.put_i16(*f);
        }
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(Self::TAG, body);
        let portal = r.cstr()?.to_owned();
        let statement = r.cstr()?.to_owned();
        let n = r.count16("parameter format count")?;
        let mut param_formats = Vec::with_capacity(n.min(body.len() / 2));
        for _ in 0..n {
            param_formats.push(r.i16("parameter format")?);
        }
        let n = r.count16("parameter count")?;
        let mut params = Vec::with_capacity(n.min(body.len() / 4));
        for _ in 0..n {
            params.push(r.nullable("parameter value")?.map(Bytes::copy_from_slice));
        }
        let n = r.count16("result format count")?;
        let mut result_formats = Vec::with_capacity(n.min(body.len() / 2));
        for _ in 0..n {
            result_formats.push(r.i16("result format")?);
        }
        r.finish()?;
        Ok(Bind {
            portal,
            statement,
            param_formats,
            params,
            result_formats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let b = Bind {
            portal: "p".into(),
            statement: "s".into(),
            param_formats: vec![0, 1],
            params: vec![Some(Bytes::from_static(b"42")), None],
            result_formats: vec![1],
        };
        let bytes = b.to_bytes();
        assert_eq!(Bind::decode(&bytes).unwrap(), b);
        assert_eq!(Bind::portal_and_statement(&bytes[5..]).unwrap(), ("p", "s"));
        assert_eq!(b.param_format(1), 1);
    }

    #[test]
    fn negative_lengths_other_than_null_are_rejected() {
        let mut body = BytesMut::new();
        body.put_slice(b"\0\0");
        body.put_i16(0);
        body.put_i16(1);
        body.put_i32(-2);
        body.put_i16(0);
        assert!(matches!(
            Bind::decode_body(&body),
            Err(CodecError::Invalid { .. })
        ));
    }
}
