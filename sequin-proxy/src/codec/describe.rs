//! Describe (frontend, 'D'): asks for the parameter and row description of
//! a prepared statement or a portal.

use bytes::{BufMut, BytesMut};

use super::{CodecError, Message, Reader, put_cstr};

/// What a Describe or Close refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `'S'`: a prepared statement.
    Statement,
    /// `'P'`: a portal.
    Portal,
}

impl Target {
    pub(crate) fn byte(self) -> u8 {
        match self {
            Target::Statement => b'S',
            Target::Portal => b'P',
        }
    }

    pub(crate) fn from_byte(tag: u8, b: u8) -> Result<Self, CodecError> {
        match b {
            b'S' => Ok(Target::Statement),
            b'P' => Ok(Target::Portal),
            _ => Err(CodecError::Invalid {
                tag,
                what: "target kind (expected 'S' or 'P')",
            }),
        }
    }
}

/// An extended-protocol Describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Describe {
    pub target: Target,
    pub name: String,
}

impl Message for Describe {
    const TAG: u8 = b'D';

    fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u8(self.target.byte());
        put_cstr(buf, self.name.as_bytes());
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(Self::TAG, body);
        let target = Target::from_byte(Self::TAG, r.u8("target kind")?)?;
        let name = r.cstr()?.to_owned();
        r.finish()?;
        Ok(Describe { target, name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for target in [Target::Statement, Target::Portal] {
            let d = Describe {
                target,
                name: "x".into(),
            };
            assert_eq!(Describe::decode(&d.to_bytes()).unwrap(), d);
        }
    }

    #[test]
    fn unknown_kind_is_rejected() {
        assert!(Describe::decode(&[b'D', 0, 0, 0, 6, b'Z', 0]).is_err());
    }
}
