//! CloseComplete (backend, '3'): a Close succeeded.

super::empty_message!(
    /// CloseComplete (backend, '3'): a Close succeeded.
    CloseComplete,
    b'3'
);
