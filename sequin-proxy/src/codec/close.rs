//! Close (frontend, 'C'): closes a prepared statement or a portal.

use bytes::{BufMut, BytesMut};

use super::{CodecError, Message, Reader, Target, put_cstr};

/// An extended-protocol Close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub target: Target,
    pub name: String,
}

impl Close {
    /// The target and name of a Close payload without copying.
    pub fn target_and_name(body: &[u8]) -> Result<(Target, &str), CodecError> {
        let mut r = Reader::new(b'C', body);
        let target = Target::from_byte(b'C', r.u8("target kind")?)?;
        Ok((target, r.cstr()?))
    }
}

impl Message for Close {
    const TAG: u8 = b'C';

    fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u8(self.target.byte());
        put_cstr(buf, self.name.as_bytes());
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(Self::TAG, body);
        let target = Target::from_byte(Self::TAG, r.u8("target kind")?)?;
        let name = r.cstr()?.to_owned();
        r.finish()?;
        Ok(Close { target, name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let c = Close {
            target: Target::Portal,
            name: "p1".into(),
        };
        let bytes = c.to_bytes();
        assert_eq!(Close::decode(&bytes).unwrap(), c);
        assert_eq!(
            Close::target_and_name(&bytes[5..]).unwrap(),
            (Target::Portal, "p1")
        );
    }
}
