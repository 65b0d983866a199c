//! CopyInResponse ('G'), CopyOutResponse ('H') and CopyBothResponse ('W')
//! (backend): the server switches to a COPY sub-protocol. The three share one
//! layout, so one type with a kind covers them.

use bytes::{BufMut, BytesMut};

use super::{CodecError, Reader};

/// Which COPY direction the server started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyResponseKind {
    In,
    Out,
    Both,
}

impl CopyResponseKind {
    pub fn tag(self) -> u8 {
        match self {
            CopyResponseKind::In => b'G',
            CopyResponseKind::Out => b'H',
            CopyResponseKind::Both => b'W',
        }
    }
}

/// A Copy{In,Out,Both}Response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyResponse {
    pub kind: CopyResponseKind,
    /// 0 text, 1 binary.
    pub format: u8,
    pub column_formats: Vec<i16>,
}

impl CopyResponse {
    pub fn encode(&self, buf: &mut BytesMut) {
        let start = buf.len();
        buf.put_u8(self.kind.tag());
        buf.put_u32(0);
        buf.put_u8(self.format);
        buf.put_i16(self.column_formats.len() as i16);
        for f in &self.column_formats {
            buf.put_i16(*f);
        }
        let len = (buf.len() - start - 1) as u32;
        buf[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    }

    pub fn decode_body(kind: CopyResponseKind, body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(kind.tag(), body);
        let format = r.u8("copy format")?;
        let n = r.count16("column count")?;
        let mut column_formats = Vec::with_capacity(n.min(body.len() / 2));
        for _ in 0..n {
            column_formats.push(r.i16("column format")?);
        }
        r.finish()?;
        Ok(CopyResponse {
            kind,
            format,
            column_formats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for kind in [
            CopyResponseKind::In,
            CopyResponseKind::Out,
            CopyResponseKind::Both,
        ] {
            let c = CopyResponse {
                kind,
                format: 0,
                column_formats: vec![0, 0],
            };
            let mut buf = BytesMut::new();
            c.encode(&mut buf);
            assert_eq!(buf[0], kind.tag());
            assert_eq!(CopyResponse::decode_body(kind, &buf[5..]).unwrap(), c);
        }
    }
}
