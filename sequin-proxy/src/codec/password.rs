//! PasswordMessage (frontend, 'p'): the client's answer to an authentication
//! request (a password, an MD5 hash, or a SASL initial/continuation message).
//! The proxy relays it without interpreting it.

use bytes::{BufMut, Bytes, BytesMut};

use super::{CodecError, Message};

/// An authentication answer, kept as opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordMessage {
    pub data: Bytes,
}

impl Message for PasswordMessage {
    const TAG: u8 = b'p';

    fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_slice(&self.data);
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        Ok(PasswordMessage {
            data: Bytes::copy_from_slice(body),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = PasswordMessage {
            data: Bytes::from_static(b"SCRAM-SHA-256\0\0\0\0\x04n,,x"),
        };
        assert_eq!(PasswordMessage::decode(&p.to_bytes()).unwrap(), p);
    }
}
