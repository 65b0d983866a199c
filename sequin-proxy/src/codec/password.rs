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

impl PasswordMessage {
    /// Read as a SASLInitialResponse: whether the client's GS2 header says
    /// `y` ("I support channel binding but think the server does not"),
    /// which a server that speaks TLS refuses as a downgrade. `None` when
    /// the body is not a SASL initial response.
    pub fn sasl_claims_binding_support(&self) -> Option<bool> {
        let body = &self.data[..];
        let nul = body.iter().position(|&b| b == 0)?;
        let rest = body.get(nul + 1..)?;
        let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        let data = rest.get(4..)?;
        if len < 0 || data.len() != len as usize {
            return None;
        }
        Some(data.first() == Some(&b'y'))
    }
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

    #[test]
    fn the_gs2_flag_of_a_sasl_initial_response() {
        let msg = |data: &'static [u8]| PasswordMessage {
            data: Bytes::from_static(data),
        };
        assert_eq!(
            msg(b"SCRAM-SHA-256\0\0\0\0\x0ay,,n=,r=ab").sasl_claims_binding_support(),
            Some(true)
        );
        assert_eq!(
            msg(b"SCRAM-SHA-256\0\0\0\0\x0an,,n=,r=ab").sasl_claims_binding_support(),
            Some(false)
        );
        // A cleartext password is no SASL message.
        assert_eq!(msg(b"secret\0").sasl_claims_binding_support(), None);
    }
}
