//! BackendKeyData (backend, 'K'): the process id and secret a client needs
//! to send a CancelRequest.

use bytes::{BufMut, BytesMut};

use super::{CodecError, Message, Reader};

/// Cancellation key of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendKeyData {
    pub pid: i32,
    pub secret: i32,
}

impl Message for BackendKeyData {
    const TAG: u8 = b'K';

    fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_i32(self.pid);
        buf.put_i32(self.secret);
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(Self::TAG, body);
        let pid = r.i32("process id")?;
        let secret = r.i32("secret key")?;
        r.finish()?;
        Ok(BackendKeyData { pid, secret })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let k = BackendKeyData {
            pid: 4242,
            secret: -7,
        };
        assert_eq!(BackendKeyData::decode(&k.to_bytes()).unwrap(), k);
    }
}
