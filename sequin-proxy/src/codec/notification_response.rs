//! NotificationResponse (backend, 'A'): a NOTIFY on a channel the session
//! LISTENs to.

use bytes::{BufMut, BytesMut};

use super::{CodecError, Message, Reader, put_cstr};

/// An asynchronous notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationResponse {
    /// Process id of the notifying backend.
    pub pid: i32,
    pub channel: String,
    pub payload: String,
}

impl Message for NotificationResponse {
    const TAG: u8 = b'A';

    fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_i32(self.pid);
        put_cstr(buf, self.channel.as_bytes());
        put_cstr(buf, self.payload.as_bytes());
    }

    fn decode_body(body: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(Self::TAG, body);
        let pid = r.i32("process id")?;
        let channel = r.cstr()?.to_owned();
        let payload = r.cstr()?.to_owned();
        r.finish()?;
        Ok(NotificationResponse {
            pid,
            channel,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let n = NotificationResponse {
            pid: 1,
            channel: "jobs".into(),
            payload: "{\"id\":1}".into(),
        };
        assert_eq!(NotificationResponse::decode(&n.to_bytes()).unwrap(), n);
    }
}
