//! Whole-message decoding by direction: which message a tag means depends
//! on who sent it (`'E'` is Execute from a client, ErrorResponse from a
//! server). Used by control paths and by the fuzz target.

use super::*;

/// Any regular message a client sends after startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendMessage {
    Query(Query),
    Parse(Parse),
    Bind(Bind),
    Describe(Describe),
    Execute(Execute),
    Close(Close),
    Sync,
    Flush,
    Terminate,
    CopyData(CopyData),
    CopyDone,
    CopyFail(CopyFail),
    Password(PasswordMessage),
    /// FunctionCall ('F'), relayed opaquely.
    FunctionCall(bytes::Bytes),
}

impl FrontendMessage {
    /// Decodes a tag and payload.
    pub fn decode(tag: u8, body: &[u8]) -> Result<Self, CodecError> {
        Ok(match tag {
            b'Q' => FrontendMessage::Query(Query::decode_body(body)?),
            b'P' => FrontendMessage::Parse(Parse::decode_body(body)?),
            b'B' => FrontendMessage::Bind(Bind::decode_body(body)?),
            b'D' => FrontendMessage::Describe(Describe::decode_body(body)?),
            b'E' => FrontendMessage::Execute(Execute::decode_body(body)?),
            b'C' => FrontendMessage::Close(Close::decode_body(body)?),
            b'S' => {
                Sync::decode_body(body)?;
                FrontendMessage::Sync
            }
            b'H' => {
                Flush::decode_body(body)?;
                FrontendMessage::Flush
            }
            b'X' => {
                Terminate::decode_body(body)?;
                FrontendMessage::Terminate
            }
            b'd' => FrontendMessage::CopyData(CopyData::decode_body(body)?),
            b'c' => {
                CopyDone::decode_body(body)?;
                FrontendMessage::CopyDone
            }
            b'f' => FrontendMessage::CopyFail(CopyFail::decode_body(body)?),
            b'p' => FrontendMessage::Password(PasswordMessage::decode_body(body)?),
            b'F' => FrontendMessage::FunctionCall(bytes::Bytes::copy_from_slice(body)),
            tag => return Err(CodecError::UnknownTag { tag }),
        })
    }

    /// Appends the encoded message.
    pub fn encode(&self, buf: &mut bytes::BytesMut) {
        use bytes::BufMut;
        match self {
            FrontendMessage::Query(m) => m.encode(buf),
            FrontendMessage::Parse(m) => m.encode(buf),
            FrontendMessage::Bind(m) => m.encode(buf),
            FrontendMessage::Describe(m) => m.encode(buf),
            FrontendMessage::Execute(m) => m.encode(buf),
            FrontendMessage::Close(m) => m.encode(buf),
            FrontendMessage::Sync => Sync.encode(buf),
            FrontendMessage::Flush => Flush.encode(buf),
            FrontendMessage::Terminate => Terminate.encode(buf),
            FrontendMessage::CopyData(m) => m.encode(buf),
            FrontendMessage::CopyDone => CopyDone.encode(buf),
            FrontendMessage::CopyFail(m) => m.encode(buf),
            FrontendMessage::Password(m) => m.encode(buf),
            FrontendMessage::FunctionCall(body) => {
                buf.put_u8(b'F');
                buf.put_u32(body.len() as u32 + 4);
                buf.put_slice(body);
            }
        }
    }
}

/// Any regular message a server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendMessage {
    Authentication(Authentication),
    BackendKeyData(BackendKeyData),
    ParameterStatus(ParameterStatus),
    ReadyForQuery(ReadyForQuery),
    RowDescription(RowDescription),
    DataRow(DataRow),
    CommandComplete(CommandComplete),
    EmptyQueryResponse,
    ErrorResponse(ErrorResponse),
    NoticeResponse(NoticeResponse),
    ParseComplete,
    BindComplete,
    CloseComplete,
    NoData,
    PortalSuspended,
    ParameterDescription(ParameterDescription),
    NotificationResponse(NotificationResponse),
    CopyResponse(CopyResponse),
    CopyData(CopyData),
    CopyDone,
    /// Any other message (FunctionCallResponse, NegotiateProtocolVersion),
    /// relayed opaquely.
    Other {
        tag: u8,
        body: bytes::Bytes,
    },
}

impl BackendMessage {
    /// Decodes a tag and payload.
    pub fn decode(tag: u8, body: &[u8]) -> Result<Self, CodecError> {
        Ok(match tag {
            b'R' => BackendMessage::Authentication(Authentication::decode_body(body)?),
            b'K' => BackendMessage::BackendKeyData(BackendKeyData::decode_body(body)?),
            b'S' => BackendMessage::ParameterStatus(ParameterStatus::decode_body(body)?),
            b'Z' => BackendMessage::ReadyForQuery(ReadyForQuery::decode_body(body)?),
            b'T' => BackendMessage::RowDescription(RowDescription::decode_body(body)?),
            b'D' => BackendMessage::DataRow(DataRow::decode_body(body)?),
            b'C' => BackendMessage::CommandComplete(CommandComplete::decode_body(body)?),
            b'I' => {
                EmptyQueryResponse::decode_body(body)?;
                BackendMessage::EmptyQueryResponse
            }
            b'E' => BackendMessage::ErrorResponse(ErrorResponse::decode_body(body)?),
            b'N' => BackendMessage::NoticeResponse(NoticeResponse::decode_body(body)?),
            b'1' => {
                ParseComplete::decode_body(body)?;
                BackendMessage::ParseComplete
            }
            b'2' => {
                BindComplete::decode_body(body)?;
                BackendMessage::BindComplete
            }
            b'3' => {
                CloseComplete::decode_body(body)?;
                BackendMessage::CloseComplete
            }
            b'n' => {
                NoData::decode_body(body)?;
                BackendMessage::NoData
            }
            b's' => {
                PortalSuspended::decode_body(body)?;
                BackendMessage::PortalSuspended
            }
            b't' => BackendMessage::ParameterDescription(ParameterDescription::decode_body(body)?),
            b'A' => BackendMessage::NotificationResponse(NotificationResponse::decode_body(body)?),
            b'G' => {
                BackendMessage::CopyResponse(CopyResponse::decode_body(CopyResponseKind::In, body)?)
            }
            b'H' => BackendMessage::CopyResponse(CopyResponse::decode_body(
                CopyResponseKind::Out,
                body,
            )?),
            b'W' => BackendMessage::CopyResponse(CopyResponse::decode_body(
                CopyResponseKind::Both,
                body,
            )?),
            b'd' => BackendMessage::CopyData(CopyData::decode_body(body)?),
            b'c' => {
                CopyDone::decode_body(body)?;
                BackendMessage::CopyDone
            }
            b'V' | b'v' => BackendMessage::Other {
                tag,
                body: bytes::Bytes::copy_from_slice(body),
            },
            tag => return Err(CodecError::UnknownTag { tag }),
        })
    }

    /// Appends the encoded message.
    pub fn encode(&self, buf: &mut bytes::BytesMut) {
        use bytes::BufMut;
        match self {
            BackendMessage::Authentication(m) => m.encode(buf),
            BackendMessage::BackendKeyData(m) => m.encode(buf),
            BackendMessage::ParameterStatus(m) => m.encode(buf),
            BackendMessage::ReadyForQuery(m) => m.encode(buf),
            BackendMessage::RowDescription(m) => m.encode(buf),
            BackendMessage::DataRow(m) => m.encode(buf),
            BackendMessage::CommandComplete(m) => m.encode(buf),
            BackendMessage::EmptyQueryResponse => EmptyQueryResponse.encode(buf),
            BackendMessage::ErrorResponse(m) => m.encode(buf),
            BackendMessage::NoticeResponse(m) => m.encode(buf),
            BackendMessage::ParseComplete => ParseComplete.encode(buf),
            BackendMessage::BindComplete => BindComplete.encode(buf),
            BackendMessage::CloseComplete => CloseComplete.encode(buf),
            BackendMessage::NoData => NoData.encode(buf),
            BackendMessage::PortalSuspended => PortalSuspended.encode(buf),
            BackendMessage::ParameterDescription(m) => m.encode(buf),
            BackendMessage::NotificationResponse(m) => m.encode(buf),
            BackendMessage::CopyResponse(m) => m.encode(buf),
            BackendMessage::CopyData(m) => m.encode(buf),
            BackendMessage::CopyDone => CopyDone.encode(buf),
            BackendMessage::Other { tag, body } => {
                buf.put_u8(*tag);
                buf.put_u32(body.len() as u32 + 4);
                buf.put_slice(body);
            }
        }
    }
}

/// Decodes every message in `data` in both directions and checks that
/// re-encoding a decoded message reproduces its bytes. This is the fuzz
/// target's body; it must never panic, whatever the input.
pub fn fuzz_decode(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some(frame)) = split_frame(rest, MAX_MESSAGE_LEN) {
        let raw = &rest[..frame.len];
        if let Ok(m) = FrontendMessage::decode(frame.tag, frame.body) {
            let mut buf = bytes::BytesMut::new();
            m.encode(&mut buf);
            assert_eq!(&buf[..], raw, "frontend re-encoding differs");
        }
        if let Ok(m) = BackendMessage::decode(frame.tag, frame.body) {
            let mut buf = bytes::BytesMut::new();
            m.encode(&mut buf);
            assert_eq!(&buf[..], raw, "backend re-encoding differs");
        }
        rest = &rest[frame.len..];
    }
    if let Ok(Some(len)) = StartupPacket::peek_len(data)
        && data.len() >= len
        && let Ok(p) = StartupPacket::decode(&data[..len])
    {
        let mut buf = bytes::BytesMut::new();
        p.encode(&mut buf);
        assert_eq!(&buf[..], &data[..len], "startup re-encoding differs");
    }
}
