//! ParameterDescription (backend, 't'): the parameter types of a described
//! statement.

use bytes::{BufMut, BytesMut};

use super::{CodecError, Message, Reader};

/// Parameter type OIDs of a prepared statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterDescription {
    pub types: Vec<u32>,
}

impl Message for ParameterDescription {
    const TAG: u8 = b't';

    fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_i16(self.types.len() as i16);
        for t in &self.types {
            buf.put_u32(*t);
        }
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(Self::TAG, body);
        let n = r.count16("parameter count")?;
        let mut types = Vec::with_capacity(n.min(body.len() / 4));
        for _ in 0..n {
            types.push(r.i32("parameter type")? as u32);
        }
        r.finish()?;
        Ok(ParameterDescription { types })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = ParameterDescription {
            types: vec![23, 25],
        };
        assert_eq!(ParameterDescription::decode(&p.to_bytes()).unwrap(), p);
    }
}
