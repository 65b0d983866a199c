//! The Postgres v3 wire protocol: one module per message, each with `encode`
//! and `decode` and round-trip tests.
//!
//! The proxy's hot path never decodes whole messages: it only looks at the
//! five-byte header (tag and length, see [`split_frame`]) and decodes the few
//! payloads it must inspect. Full decoding is for the control paths (startup,
//! authentication relay, injected statements, synthesized replies) and for the
//! fuzz target ([`FrontendMessage::decode`], [`BackendMessage::decode`]).

use bytes::{BufMut, BytesMut};

pub mod authentication;
pub mod backend_key_data;
pub mod bind;
pub mod bind_complete;
pub mod close;
pub mod close_complete;
pub mod command_complete;
pub mod copy_data;
pub mod copy_done;
pub mod copy_fail;
pub mod copy_response;
pub mod data_row;
pub mod describe;
pub mod empty_query_response;
pub mod error_response;
pub mod execute;
pub mod flush;
pub mod no_data;
pub mod notification_response;
pub mod parameter_description;
pub mod parameter_status;
pub mod parse;
pub mod parse_complete;
pub mod password;
pub mod portal_suspended;
pub mod query;
pub mod ready_for_query;
pub mod row_description;
pub mod startup;
pub mod sync;
pub mod terminate;

mod messages;
pub use messages::{BackendMessage, FrontendMessage, fuzz_decode};

pub use authentication::Authentication;
pub use backend_key_data::BackendKeyData;
pub use bind::Bind;
pub use bind_complete::BindComplete;
pub use close::Close;
pub use close_complete::CloseComplete;
pub use command_complete::CommandComplete;
pub use copy_data::CopyData;
pub use copy_done::CopyDone;
pub use copy_fail::CopyFail;
pub use copy_response::{CopyResponse, CopyResponseKind};
pub use data_row::DataRow;
pub use describe::{Describe, Target};
pub use empty_query_response::EmptyQueryResponse;
pub use error_response::{ErrorResponse, NoticeResponse};
pub use execute::Execute;
pub use flush::Flush;
pub use no_data::NoData;
pub use notification_response::NotificationResponse;
pub use parameter_description::ParameterDescription;
pub use parameter_status::ParameterStatus;
pub use parse::Parse;
pub use parse_complete::ParseComplete;
pub use password::PasswordMessage;
pub use portal_suspended::PortalSuspended;
pub use query::Query;
pub use ready_for_query::ReadyForQuery;
pub use row_description::{FieldDescription, RowDescription};
pub use startup::{CancelRequest, StartupMessage, StartupPacket};
pub use sync::Sync;
pub use terminate::Terminate;

/// Bytes of a regular message header: one tag byte and a four-byte length
/// that counts itself but not the tag.
pub const HEADER_LEN: usize = 5;

/// The largest message Postgres itself accepts (`PQ_LARGE_MESSAGE_LIMIT`).
pub const MAX_MESSAGE_LEN: u32 = 0x3fff_ffff;

/// Why bytes are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("message '{}' is truncated while reading {what}", *tag as char)]
    Truncated { tag: u8, what: &'static str },
    #[error("message '{}' declares an invalid length {len}", *tag as char)]
    InvalidLength { tag: u8, len: u32 },
    #[error("message '{}' of {len} bytes exceeds the limit of {limit} bytes", *tag as char)]
    TooLarge { tag: u8, len: u32, limit: u32 },
    #[error("message '{}' has a string without its NUL terminator", *tag as char)]
    MissingNul { tag: u8 },
    #[error("message '{}' has a string that is not UTF-8", *tag as char)]
    NotUtf8 { tag: u8 },
    #[error("message '{}' has {count} unexpected trailing bytes", *tag as char)]
    Trailing { tag: u8, count: usize },
    #[error("message '{}' has an invalid {what}", *tag as char)]
    Invalid { tag: u8, what: &'static str },
    #[error("expected message '{}', got '{}'", *expected as char, *got as char)]
    WrongTag { expected: u8, got: u8 },
    #[error("unknown message type '{}' (0x{:02x})", *tag as char, *tag)]
    UnknownTag { tag: u8 },
}

/// One complete message found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub tag: u8,
    /// The payload after the header.
    pub body: &'a [u8],
    /// Length of the whole frame, header included.
    pub len: usize,
}

/// Reads the header at the start of `buf`: `Some((tag, frame_len))` once five
/// bytes are there, validating the declared length against `max_len`.
pub fn peek_header(buf: &[u8], max_len: u32) -> Result<Option<(u8, usize)>, CodecError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let tag = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(CodecError::InvalidLength { tag, len });
    }
    if len > max_len {
        return Err(CodecError::TooLarge {
            tag,
            len,
            limit: max_len,
        });
    }
    Ok(Some((tag, len as usize + 1)))
}

/// Splits the first complete message off `buf`; `Ok(None)` means more bytes
/// are needed.
pub fn split_frame(buf: &[u8], max_len: u32) -> Result<Option<Frame<'_>>, CodecError> {
    match peek_header(buf, max_len)? {
        Some((tag, len)) if buf.len() >= len => Ok(Some(Frame {
            tag,
            body: &buf[HEADER_LEN..len],
            len,
        })),
        _ => Ok(None),
    }
}

/// A message with a one-byte tag, encodable and decodable on its own.
pub trait Message: Sized {
    /// The message type byte.
    const TAG: u8;

    /// Appends the payload (everything after the header).
    fn encode_body(&self, buf: &mut BytesMut);

    /// Decodes a payload (everything after the header).
    fn decode_body(body: &[u8]) -> Result<Self, CodecError>;

    /// Appends the whole message, header included.
    fn encode(&self, buf: &mut BytesMut) {
        let start = buf.len();
        buf.put_u8(Self::TAG);
        buf.put_u32(0);
        self.encode_body(buf);
        let len = (buf.len() - start - 1) as u32;
        buf[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    }

    /// Decodes one whole message (header included) that must fill `frame`.
    fn decode(frame: &[u8]) -> Result<Self, CodecError> {
        let Some(f) = split_frame(frame, MAX_MESSAGE_LEN)? else {
            let tag = frame.first().copied().unwrap_or(Self::TAG);
            return Err(CodecError::Truncated {
                tag,
                what: "the message",
            });
        };
        if f.tag != Self::TAG {
            return Err(CodecError::WrongTag {
                expected: Self::TAG,
                got: f.tag,
            });
        }
        if f.len != frame.len() {
            return Err(CodecError::Trailing {
                tag: f.tag,
                count: frame.len() - f.len,
            });
        }
        Self::decode_body(f.body)
    }

    /// The encoded message as a fresh buffer.
    fn to_bytes(&self) -> BytesMut {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        buf
    }
}

/// A cursor over a payload that reports truncation with the message tag.
pub(crate) struct Reader<'a> {
    tag: u8,
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(tag: u8, buf: &'a [u8]) -> Self {
        Reader { tag, buf }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Truncated {
                tag: self.tag,
                what,
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn i16(&mut self, what: &'static str) -> Result<i16, CodecError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn i32(&mut self, what: &'static str) -> Result<i32, CodecError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count that must not be negative.
    pub(crate) fn count16(&mut self, what: &'static str) -> Result<usize, CodecError> {
        let n = self.i16(what)?;
        usize::try_from(n).map_err(|_| CodecError::Invalid {
            tag: self.tag,
            what,
        })
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        self.take(n, what)
    }

    /// A NUL-terminated UTF-8 string.
    pub(crate) fn cstr(&mut self) -> Result<&'a str, CodecError> {
        let raw = self.cstr_bytes()?;
        std::str::from_utf8(raw).map_err(|_| CodecError::NotUtf8 { tag: self.tag })
    }

    /// A NUL-terminated byte string.
    pub(crate) fn cstr_bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let Some(nul) = self.buf.iter().position(|&b| b == 0) else {
            return Err(CodecError::MissingNul { tag: self.tag });
        };
        let s = &self.buf[..nul];
        self.buf = &self.buf[nul + 1..];
        Ok(s)
    }

    /// A length-prefixed value where -1 means NULL.
    pub(crate) fn nullable(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, CodecError> {
        let n = self.i32(what)?;
        if n == -1 {
            return Ok(None);
        }
        let n = usize::try_from(n).map_err(|_| CodecError::Invalid {
            tag: self.tag,
            what,
        })?;
        Ok(Some(self.take(n, what)?))
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Fails when bytes are left over.
    pub(crate) fn finish(self) -> Result<(), CodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Trailing {
                tag: self.tag,
                count: self.buf.len(),
            })
        }
    }
}

/// Appends a NUL-terminated string.
pub(crate) fn put_cstr(buf: &mut BytesMut, s: &[u8]) {
    buf.put_slice(s);
    buf.put_u8(0);
}

/// Appends a length-prefixed value where `None` is NULL.
pub(crate) fn put_nullable(buf: &mut BytesMut, v: Option<&[u8]>) {
    match v {
        Some(v) => {
            buf.put_i32(v.len() as i32);
            buf.put_slice(v);
        }
        None => buf.put_i32(-1),
    }
}

/// Declares a message without a payload (ParseComplete, Sync, ...).
macro_rules! empty_message {
    ($(#[$doc:meta])* $name:ident, $tag:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name;

        impl $crate::codec::Message for $name {
            const TAG: u8 = $tag;

            fn encode_body(&self, _buf: &mut bytes::BytesMut) {}

            fn decode_body(body: &[u8]) -> Result<Self, $crate::codec::CodecError> {
                if body.is_empty() {
                    Ok($name)
                } else {
                    Err($crate::codec::CodecError::Trailing {
                        tag: $tag,
                        count: body.len(),
                    })
                }
            }
        }

        #[cfg(test)]
        mod tests {
            use super::*;
            use $crate::codec::Message;

            #[test]
            fn round_trip() {
                let bytes = $name.to_bytes();
                assert_eq!(&bytes[..], &[$tag, 0, 0, 0, 4]);
                assert_eq!($name::decode(&bytes).unwrap(), $name);
            }

            #[test]
            fn rejects_a_payload() {
                assert!($name::decode(&[$tag, 0, 0, 0, 5, 1]).is_err());
            }
        }
    };
}
pub(crate) use empty_message;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_frame_needs_the_whole_message() {
        let msg = [b'Q', 0, 0, 0, 6, b'x', 0, b'S'];
        assert_eq!(split_frame(&msg[..3], MAX_MESSAGE_LEN), Ok(None));
        assert_eq!(split_frame(&msg[..6], MAX_MESSAGE_LEN), Ok(None));
        let f = split_frame(&msg, MAX_MESSAGE_LEN).unwrap().unwrap();
        assert_eq!((f.tag, f.body, f.len), (b'Q', &b"x\0"[..], 7));
    }

    #[test]
    fn lengths_below_four_and_above_the_limit_are_errors() {
        assert!(matches!(
            split_frame(&[b'Q', 0, 0, 0, 3], MAX_MESSAGE_LEN),
            Err(CodecError::InvalidLength { .. })
        ));
        assert!(matches!(
            split_frame(&[b'Q', 0x7f, 0, 0, 0], MAX_MESSAGE_LEN),
            Err(CodecError::TooLarge { .. })
        ));
    }
}
