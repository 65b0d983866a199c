//! Execute (frontend, 'E'): runs a portal, optionally limited to a number
//! of rows.

use bytes::{BufMut, BytesMut};

use super::{CodecError, Message, Reader, put_cstr};

/// An extended-protocol Execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execute {
    pub portal: String,
    /// Row limit; 0 means no limit.
    pub max_rows: i32,
}

impl Execute {
    /// The portal name of an Execute payload without copying.
    pub fn portal_of(body: &[u8]) -> Result<&str, CodecError> {
        Reader::new(b'E', body).cstr()
    }
}

impl Message for Execute {
    const TAG: u8 = b'E';

    fn encode_body(&self, buf: &mut BytesMut) {
        put_cstr(buf, self.portal.as_bytes());
        buf.put_i32(self.max_rows);
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(Self::TAG, body);
        let portal = r.cstr()?.to_owned();
        let max_rows = r.i32("row limit")?;
        r.finish()?;
        Ok(Execute { portal, max_rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = Execute {
            portal: String::new(),
            max_rows: 10,
        };
        assert_eq!(Execute::decode(&e.to_bytes()).unwrap(), e);
    }

    #[test]
    fn missing_row_limit_is_truncation() {
        assert!(matches!(
            Execute::decode(&[b'E', 0, 0, 0, 5, 0]),
            Err(CodecError::Truncated { .. })
        ));
    }
}
