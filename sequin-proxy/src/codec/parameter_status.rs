//! ParameterStatus (backend, 'S'): the server reports a run-time parameter
//! (at startup and whenever a reported one changes).

use bytes::BytesMut;

use super::{CodecError, Message, Reader, put_cstr};

/// A reported run-time parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterStatus {
    pub name: String,
    pub value: String,
}

impl Message for ParameterStatus {
    const TAG: u8 = b'S';

    fn encode_body(&self, buf: &mut BytesMut) {
        put_cstr(buf, self.name.as_bytes());
        put_cstr(buf, self.value.as_bytes());
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(Self::TAG, body);
        let name = r.cstr()?.to_owned();
        let value = r.cstr()?.to_owned();
        r.finish()?;
        Ok(ParameterStatus { name, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = ParameterStatus {
            name: "TimeZone".into(),
            value: "UTC".into(),
        };
        assert_eq!(ParameterStatus::decode(&s.to_bytes()).unwrap(), s);
    }
}
