//! RowDescription (backend, 'T'): names and types of the columns of the rows
//! that follow.

use bytes::{BufMut, BytesMut};

use super::{CodecError, Message, Reader, put_cstr};

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription {
    pub name: String,
    /// OID of the source table, 0 when not a plain column.
    pub table_oid: u32,
    /// Attribute number in the source table, 0 when not a plain column.
    pub column_id: i16,
    pub type_oid: u32,
    pub type_size: i16,
    pub type_modifier: i32,
    /// 0 text, 1 binary.
    pub format: i16,
}

impl FieldDescription {
    /// A text-format column of the given type that is not a table column.
    pub fn new(name: impl Into<String>, type_oid: u32) -> Self {
        FieldDescription {
            name: name.into(),
            table_oid: 0,
            column_id: 0,
            type_oid,
            type_size: -1,
            type_modifier: -1,
            format: 0,
        }
    }
}

/// The column layout of a result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RowDescription {
    pub fields: Vec<FieldDescription>,
}

impl Message for RowDescription {
    const TAG: u8 = b'T';

    fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_i16(self.fields.len() as i16);
        for f in &self.fields {
            put_cstr(buf, f.name.as_bytes());
            buf.put_u32(f.table_oid);
            buf.put_i16(f.column_id);
            buf.put_u32(f.type_oid);
            buf.put_i16(f.type_size);
            buf.put_i32(f.type_modifier);
            buf.put_i16(f.format);
        }
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(Self::TAG, body);
        let n = r.count16("field count")?;
        let mut fields = Vec::with_capacity(n.min(body.len() / 19));
        for _ in 0..n {
            fields.push(FieldDescription {
                name: r.cstr()?.to_owned(),
                table_oid: r.i32("table oid")? as u32,
                column_id: r.i16("column number")?,
                type_oid: r.i32("type oid")? as u32,
                type_size: r.i16("type size")?,
                type_modifier: r.i32("type modifier")?,
                format: r.i16("format")?,
            });
        }
        r.finish()?;
        Ok(RowDescription { fields })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut id = FieldDescription::new("id", 25);
        id.table_oid = 16384;
        id.column_id = 1;
        let t = RowDescription {
            fields: vec![id, FieldDescription::new("n", 23)],
        };
        assert_eq!(RowDescription::decode(&t.to_bytes()).unwrap(), t);
    }

    #[test]
    fn count_larger_than_fields_is_an_error() {
        let mut buf = BytesMut::new();
        RowDescription {
            fields: vec![FieldDescription::new("a", 25)],
        }
        .encode(&mut buf);
        buf[6] = 2;
        assert!(RowDescription::decode(&buf).is_err());
    }
}
