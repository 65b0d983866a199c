//! ReadyForQuery (backend, 'Z'): the server is idle and reports the
//! transaction status: `I` idle, `T` in a transaction block, `E` in a failed
//! transaction block.

use bytes::{BufMut, BytesMut};

use super::{CodecError, Message, Reader};

/// The end of a simple query or of an extended-protocol pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyForQuery {
    pub status: u8,
}

impl Message for ReadyForQuery {
    const TAG: u8 = b'Z';

    fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u8(self.status);
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(Self::TAG, body);
        let status = r.u8("transaction status")?;
        if !matches!(status, b'I' | b'T' | b'E') {
            return Err(CodecError::Invalid {
                tag: Self::TAG,
                what: "transaction status",
            });
        }
        r.finish()?;
        Ok(ReadyForQuery { status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for status in [b'I', b'T', b'E'] {
            let z = ReadyForQuery { status };
            assert_eq!(ReadyForQuery::decode(&z.to_bytes()).unwrap(), z);
        }
        assert!(ReadyForQuery::decode(&[b'Z', 0, 0, 0, 5, b'x']).is_err());
    }
}
