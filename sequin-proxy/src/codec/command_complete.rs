//! CommandComplete (backend, 'C'): a statement finished; the tag says what
//! it did (`INSERT 0 3`, `UPDATE 1`, `SELECT 5`, ...).

use bytes::BytesMut;

use super::{CodecError, Message, Reader, put_cstr};

/// The end of one statement's results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandComplete {
    pub tag: String,
}

impl Message for CommandComplete {
    const TAG: u8 = b'C';

    fn encode_body(&self, buf: &mut BytesMut) {
        put_cstr(buf, self.tag.as_bytes());
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(Self::TAG, body);
        let tag = r.cstr()?.to_owned();
        r.finish()?;
        Ok(CommandComplete { tag })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let c = CommandComplete {
            tag: "INSERT 0 1".into(),
        };
        assert_eq!(CommandComplete::decode(&c.to_bytes()).unwrap(), c);
    }
}
