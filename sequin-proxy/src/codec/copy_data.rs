//! CopyData (both directions, 'd'): a chunk of a COPY data stream.

use bytes::{BufMut, Bytes, BytesMut};

use super::{CodecError, Message};

/// A chunk of COPY data; the proxy normally streams these without decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyData {
    pub data: Bytes,
}

impl Message for CopyData {
    const TAG: u8 = b'd';

    fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_slice(&self.data);
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        Ok(CopyData {
            data: Bytes::copy_from_slice(body),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = CopyData {
            data: Bytes::from_static(b"1\tone\n"),
        };
        assert_eq!(CopyData::decode(&d.to_bytes()).unwrap(), d);
    }
}
