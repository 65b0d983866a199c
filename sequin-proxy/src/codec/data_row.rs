//! DataRow (backend, 'D'): one result row; each value is NULL or bytes in
//! the column's format.

use bytes::{BufMut, Bytes, BytesMut};

use super::{CodecError, Message, Reader, put_nullable};

/// One row of a result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataRow {
    pub values: Vec<Option<Bytes>>,
}

impl DataRow {
    /// A row of text values.
    pub fn from_text<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> Self {
        DataRow {
            values: values
                .into_iter()
                .map(|v| v.map(|s| Bytes::copy_from_slice(s.as_bytes())))
                .collect(),
        }
    }

    /// Value `i` as UTF-8 text (`None` for NULL or non-text bytes).
    pub fn text(&self, i: usize) -> Option<&str> {
        self.values
            .get(i)?
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
    }
}

impl Message for DataRow {
    const TAG: u8 = b'D';

    fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_i16(self.values.len() as i16);
        for v in &self.values {
            put_nullable(buf, v.as_deref());
        }
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(Self::TAG, body);
        let n = r.count16("column count")?;
        let mut values = Vec::with_capacity(n.min(body.len() / 4));
        for _ in 0..n {
            values.push(r.nullable("column value")?.map(Bytes::copy_from_slice));
        }
        r.finish()?;
        Ok(DataRow { values })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = DataRow::from_text([Some("cus_1"), None, Some("")]);
        let back = DataRow::decode(&d.to_bytes()).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.text(0), Some("cus_1"));
        assert_eq!(back.text(1), None);
    }

    #[test]
    fn value_longer_than_message_is_truncation() {
        assert!(matches!(
            DataRow::decode(&[b'D', 0, 0, 0, 10, 0, 1, 0, 0, 0, 9]),
            Err(CodecError::Truncated { .. })
        ));
    }
}
