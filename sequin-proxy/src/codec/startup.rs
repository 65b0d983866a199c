//! The untagged first packet of a connection: StartupMessage, SSLRequest,
//! GSSENCRequest or CancelRequest. They carry a length and a four-byte code
//! instead of a tag.

use bytes::{BufMut, BytesMut};

use super::{CodecError, Reader, put_cstr};

/// Protocol 3.0.
pub const PROTOCOL_3_0: i32 = 196_608;
/// The SSLRequest code.
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
/// The GSSENCRequest code.
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
/// The CancelRequest code.
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// Postgres rejects startup packets longer than this (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_LEN: usize = 10_000;

/// Tag used in errors about untagged packets.
const STARTUP_TAG: u8 = b'0';

/// Startup parameters (`user`, `database`, `options`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    pub protocol: i32,
    pub params: Vec<(String, String)>,
}

impl StartupMessage {
    /// The value of a startup parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A request to cancel the query running in another session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelRequest {
    pub pid: i32,
    pub secret: i32,
}

/// Any first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    Startup(StartupMessage),
    SslRequest,
    GssEncRequest,
    Cancel(CancelRequest),
}

impl StartupPacket {
    /// Length of the packet at the start of `buf` once four bytes are there.
    pub fn peek_len(buf: &[u8]) -> Result<Option<usize>, CodecError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if len < 8 {
            return Err(CodecError::InvalidLength {
                tag: STARTUP_TAG,
                len,
            });
        }
        if len as usize > MAX_STARTUP_LEN {
            return Err(CodecError::TooLarge {
                tag: STARTUP_TAG,
                len,
                limit: MAX_STARTUP_LEN as u32,
            });
        }
        Ok(Some(len as usize))
    }

    /// Decodes a whole packet (length included).
    pub fn decode(packet: &[u8]) -> Result<Self, CodecError> {
        let Some(len) = Self::peek_len(packet)? else {
            return Err(CodecError::Truncated {
                tag: STARTUP_TAG,
                what: "the length",
            });
        };
        if packet.len() != len {
            return Err(CodecError::InvalidLength {
                tag: STARTUP_TAG,
                len: len as u32,
            });
        }
        let mut r = Reader::new(STARTUP_TAG, &packet[4..]);
        let code = r.i32("protocol code")?;
        let packet = match code {
            SSL_REQUEST_CODE => StartupPacket::SslRequest,
            GSSENC_REQUEST_CODE => StartupPacket::GssEncRequest,
            CANCEL_REQUEST_CODE => StartupPacket::Cancel(CancelRequest {
                pid: r.i32("process id")?,
                secret: r.i32("secret key")?,
            }),
            protocol if protocol >> 16 == 3 => {
                let mut params = Vec::new();
                loop {
                    let k = r.cstr()?;
                    if k.is_empty() {
                        break;
                    }
                    params.push((k.to_owned(), r.cstr()?.to_owned()));
                }
                StartupPacket::Startup(StartupMessage { protocol, params })
            }
            _ => {
                return Err(CodecError::Invalid {
                    tag: STARTUP_TAG,
                    what: "protocol version",
                });
            }
        };
        if !r.is_empty() {
            return Err(CodecError::Trailing {
                tag: STARTUP_TAG,
                count: r.rest().len(),
            });
        }
        Ok(packet)
    }

    /// Appends the packet.
    pub fn encode(&self, buf: &mut BytesMut) {
        let start = buf.len();
        buf.put_u32(0);
        match self {
            StartupPacket::SslRequest => buf.put_i32(SSL_REQUEST_CODE),
            StartupPacket::GssEncRequest => buf.put_i32(GSSENC_REQUEST_CODE),
            StartupPacket::Cancel(c) => {
                buf.put_i32(CANCEL_REQUEST_CODE);
                buf.put_i32(c.pid);
                buf.put_i32(c.secret);
            }
            StartupPacket::Startup(s) => {
                buf.put_i32(s.protocol);
                for (k, v) in &s.params {
                    put_cstr(buf, k.as_bytes());
                    put_cstr(buf, v.as_bytes());
                }
                buf.put_u8(0);
            }
        }
        let len = (buf.len() - start) as u32;
        buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for p in [
            StartupPacket::SslRequest,
            StartupPacket::GssEncRequest,
            StartupPacket::Cancel(CancelRequest { pid: 9, secret: 77 }),
            StartupPacket::Startup(StartupMessage {
                protocol: PROTOCOL_3_0,
                params: vec![
                    ("user".into(), "postgres".into()),
                    ("database".into(), "app".into()),
                ],
            }),
        ] {
            let mut buf = BytesMut::new();
            p.encode(&mut buf);
            assert_eq!(StartupPacket::decode(&buf).unwrap(), p);
        }
    }

    #[test]
    fn bad_lengths_and_versions_are_rejected() {
        assert!(StartupPacket::peek_len(&[0, 0, 0, 4]).is_err());
        assert!(StartupPacket::peek_len(&[0, 1, 0, 0]).is_err());
        assert!(StartupPacket::decode(&[0, 0, 0, 8, 0, 2, 0, 0]).is_err());
    }
}
