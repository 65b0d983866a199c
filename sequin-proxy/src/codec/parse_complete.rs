//! ParseComplete (backend, '1'): a Parse succeeded.

super::empty_message!(
    /// ParseComplete (backend, '1'): a Parse succeeded.
    ParseComplete,
    b'1'
);
