//! Authentication (backend, 'R'): the server's authentication requests and
//! its final AuthenticationOk.

use bytes::{BufMut, Bytes, BytesMut};

use super::{CodecError, Message, Reader, put_cstr};

/// An authentication request or result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// 0: authenticated.
    Ok,
    /// 3: send the password in clear text.
    CleartextPassword,
    /// 5: send `md5(md5(password || user) || salt)`.
    Md5Password { salt: [u8; 4] },
    /// 10: start SASL with one of these mechanisms.
    Sasl { mechanisms: Vec<String> },
    /// 11: SASL challenge.
    SaslContinue { data: Bytes },
    /// 12: SASL outcome (no answer expected).
    SaslFinal { data: Bytes },
    /// Any other request (GSS, SSPI, ...), kept opaque.
    Other { code: i32, data: Bytes },
}

/// The SASL mechanisms with channel binding (`SCRAM-SHA-256-PLUS`) end so.
const CHANNEL_BINDING_SUFFIX: &str = "-PLUS";

impl Authentication {
    /// Whether the client must answer with a PasswordMessage.
    pub fn expects_answer(&self) -> bool {
        !matches!(self, Authentication::Ok | Authentication::SaslFinal { .. })
    }

    /// The SASL request without its channel-binding mechanisms, when it
    /// offers any. A proxy that holds TLS on both sides cannot relay
    /// channel binding (the client would bind to the proxy's certificate,
    /// the server checks its own), so it must not be offered.
    pub fn without_channel_binding(&self) -> Option<Authentication> {
        let Authentication::Sasl { mechanisms } = self else {
            return None;
        };
        if !mechanisms
            .iter()
            .any(|m| m.ends_with(CHANNEL_BINDING_SUFFIX))
        {
            return None;
        }
        Some(Authentication::Sasl {
            mechanisms: mechanisms
                .iter()
                .filter(|m| !m.ends_with(CHANNEL_BINDING_SUFFIX))
                .cloned()
                .collect(),
        })
    }
}

impl Message for Authentication {
    const TAG: u8 = b'R';

    fn encode_body(&self, buf: &mut BytesMut) {
        match self {
            Authentication::Ok => buf.put_i32(0),
            Authentication::CleartextPassword => buf.put_i32(3),
            Authentication::Md5Password { salt } => {
                buf.put_i32(5);
                buf.put_slice(salt);
            }
            Authentication::Sasl { mechanisms } => {
                buf.put_i32(10);
                for m in mechanisms {
                    put_cstr(buf, m.as_bytes());
                }
                buf.put_u8(0);
            }
            Authentication::SaslContinue { data } => {
                buf.put_i32(11);
                buf.put_slice(data);
            }
            Authentication::SaslFinal { data } => {
                buf.put_i32(12);
                buf.put_slice(data);
            }
            Authentication::Other { code, data } => {
                buf.put_i32(*code);
                buf.put_slice(data);
            }
        }
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(Self::TAG, body);
        let code = r.i32("authentication code")?;
        let msg = match code {
            0 => Authentication::Ok,
            3 => Authentication::CleartextPassword,
            5 => {
                let s = r.bytes(4, "md5 salt")?;
                Authentication::Md5Password {
                    salt: [s[0], s[1], s[2], s[3]],
                }
            }
            10 => {
                let mut mechanisms = Vec::new();
                loop {
                    let m = r.cstr()?;
                    if m.is_empty() {
                        break;
                    }
                    mechanisms.push(m.to_owned());
                }
                Authentication::Sasl { mechanisms }
            }
            11 => Authentication::SaslContinue {
                data: Bytes::copy_from_slice(r.rest()),
            },
            12 => Authentication::SaslFinal {
                data: Bytes::copy_from_slice(r.rest()),
            },
            code => Authentication::Other {
                code,
                data: Bytes::copy_from_slice(r.rest()),
            },
        };
        r.finish()?;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for a in [
            Authentication::Ok,
            Authentication::CleartextPassword,
            Authentication::Md5Password { salt: [1, 2, 3, 4] },
            Authentication::Sasl {
                mechanisms: vec!["SCRAM-SHA-256".into(), "SCRAM-SHA-256-PLUS".into()],
            },
            Authentication::SaslContinue {
                data: Bytes::from_static(b"r=abc,s=xyz,i=4096"),
            },
            Authentication::SaslFinal {
                data: Bytes::from_static(b"v=xyz"),
            },
            Authentication::Other {
                code: 7,
                data: Bytes::new(),
            },
        ] {
            assert_eq!(Authentication::decode(&a.to_bytes()).unwrap(), a);
        }
        assert!(!Authentication::Ok.expects_answer());
        assert!(Authentication::CleartextPassword.expects_answer());
    }

    #[test]
    fn channel_binding_mechanisms_are_stripped() {
        let offered = Authentication::Sasl {
            mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()],
        };
        assert_eq!(
            offered.without_channel_binding(),
            Some(Authentication::Sasl {
                mechanisms: vec!["SCRAM-SHA-256".into()]
            })
        );
        let plain = Authentication::Sasl {
            mechanisms: vec!["SCRAM-SHA-256".into()],
        };
        assert_eq!(plain.without_channel_binding(), None);
        assert_eq!(Authentication::Ok.without_channel_binding(), None);
    }

    #[test]
    fn short_md5_salt_is_truncation() {
        assert!(matches!(
            Authentication::decode(&[b'R', 0, 0, 0, 10, 0, 0, 0, 5, 1, 2]),
            Err(CodecError::Truncated { .. })
        ));
    }
}
