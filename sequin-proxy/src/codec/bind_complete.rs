//! BindComplete (backend, '2'): a Bind succeeded.

super::empty_message!(
    /// BindComplete (backend, '2'): a Bind succeeded.
    BindComplete,
    b'2'
);
