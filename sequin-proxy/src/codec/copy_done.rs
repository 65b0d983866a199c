//! CopyDone (both directions, 'c'): the end of a COPY data stream.

super::empty_message!(
    /// CopyDone (both directions, 'c'): the end of a COPY data stream.
    CopyDone,
    b'c'
);
