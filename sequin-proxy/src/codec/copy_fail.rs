//! CopyFail (frontend, 'f'): the client aborts a COPY FROM STDIN.

use bytes::BytesMut;

use super::{CodecError, Message, Reader, put_cstr};

/// The client's reason for aborting a COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFail {
    pub message: String,
}

impl Message for CopyFail {
    const TAG: u8 = b'f';

    fn encode_body(&self, buf: &mut BytesMut) {
        put_cstr(buf, self.message.as_bytes());
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(Self::TAG, body);
        let message = r.cstr()?.to_owned();
        r.finish()?;
        Ok(CopyFail { message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let f = CopyFail {
            message: "stop".into(),
        };
        assert_eq!(CopyFail::decode(&f.to_bytes()).unwrap(), f);
    }
}
