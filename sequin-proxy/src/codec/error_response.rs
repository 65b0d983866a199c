//! ErrorResponse (backend, 'E') and NoticeResponse (backend, 'N'): a list of
//! typed fields (severity, SQLSTATE, message, detail, schema, table,
//! column, ...). Both share one layout.

use bytes::{BufMut, BytesMut};

use super::{CodecError, Message, Reader, put_cstr};

/// Field type codes of error and notice messages.
pub mod field {
    /// Localized severity (`ERROR`, `FATAL`, ...).
    pub const SEVERITY: u8 = b'S';
    /// Severity that is never localized (PG 9.6+).
    pub const SEVERITY_NONLOCALIZED: u8 = b'V';
    /// SQLSTATE code.
    pub const CODE: u8 = b'C';
    pub const MESSAGE: u8 = b'M';
    pub const DETAIL: u8 = b'D';
    pub const HINT: u8 = b'H';
    pub const POSITION: u8 = b'P';
    pub const WHERE: u8 = b'W';
    pub const SCHEMA: u8 = b's';
    pub const TABLE: u8 = b't';
    pub const COLUMN: u8 = b'c';
    pub const DATA_TYPE: u8 = b'd';
    pub const CONSTRAINT: u8 = b'n';
}

/// An error; the statement (and in a transaction block, the transaction)
/// failed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorResponse {
    /// `(field code, value)` in wire order.
    pub fields: Vec<(u8, String)>,
}

impl ErrorResponse {
    /// An error with severity, SQLSTATE and message; add fields with
    /// [`Self::with`].
    pub fn new(severity: &str, code: &str, message: impl Into<String>) -> Self {
        ErrorResponse {
            fields: vec![
                (field::SEVERITY, severity.to_owned()),
                (field::SEVERITY_NONLOCALIZED, severity.to_owned()),
                (field::CODE, code.to_owned()),
                (field::MESSAGE, message.into()),
            ],
        }
    }

    /// Adds (or replaces) a field.
    pub fn with(mut self, code: u8, value: impl Into<String>) -> Self {
        let value = value.into();
        match self.fields.iter_mut().find(|(c, _)| *c == code) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((code, value)),
        }
        self
    }

    /// The value of a field.
    pub fn get(&self, code: u8) -> Option<&str> {
        self.fields
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_str())
    }

    /// The SQLSTATE.
    pub fn code(&self) -> Option<&str> {
        self.get(field::CODE)
    }

    /// The primary message.
    pub fn message(&self) -> Option<&str> {
        self.get(field::MESSAGE)
    }

    pub(crate) fn encode_fields(fields: &[(u8, String)], buf: &mut BytesMut) {
        for (code, value) in fields {
            buf.put_u8(*code);
            put_cstr(buf, value.as_bytes());
        }
        buf.put_u8(0);
    }

    pub(crate) fn decode_fields(tag: u8, body: &[u8]) -> Result<Vec<(u8, String)>, CodecError> {
        let mut r = Reader::new(tag, body);
        let mut fields = Vec::new();
        loop {
            let code = r.u8("field code")?;
            if code == 0 {
                break;
            }
            fields.push((code, r.cstr()?.to_owned()));
        }
        r.finish()?;
        Ok(fields)
    }
}

impl std::fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.get(field::SEVERITY).unwrap_or("ERROR"),
            self.code().unwrap_or("?????"),
            self.message().unwrap_or("")
        )
    }
}

impl Message for ErrorResponse {
    const TAG: u8 = b'E';

    fn encode_body(&self, buf: &mut BytesMut) {
        Self::encode_fields(&self.fields, buf);
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        Ok(ErrorResponse {
            fields: Self::decode_fields(Self::TAG, body)?,
        })
    }
}

/// A notice (warning, info); the statement goes on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NoticeResponse {
    pub fields: Vec<(u8, String)>,
}

impl Message for NoticeResponse {
    const TAG: u8 = b'N';

    fn encode_body(&self, buf: &mut BytesMut) {
        ErrorResponse::encode_fields(&self.fields, buf);
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        Ok(NoticeResponse {
            fields: ErrorResponse::decode_fields(Self::TAG, body)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_all_fields() {
        let e = ErrorResponse::new("ERROR", "23514", "[Stripe]: email is invalid")
            .with(field::DETAIL, "HTTP 400")
            .with(field::SCHEMA, "stripe")
            .with(field::TABLE, "customer")
            .with(field::COLUMN, "email");
        let back = ErrorResponse::decode(&e.to_bytes()).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.code(), Some("23514"));
        assert_eq!(back.get(field::COLUMN), Some("email"));
        assert_eq!(back.to_string(), "ERROR 23514: [Stripe]: email is invalid");
        let n = NoticeResponse {
            fields: vec![(field::MESSAGE, "hi".into())],
        };
        assert_eq!(NoticeResponse::decode(&n.to_bytes()).unwrap(), n);
    }

    #[test]
    fn missing_final_terminator_is_truncation() {
        assert!(matches!(
            ErrorResponse::decode(&[b'E', 0, 0, 0, 7, b'M', b'x', 0]),
            Err(CodecError::Truncated { .. })
        ));
    }
}
