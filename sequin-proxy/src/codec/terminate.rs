//! Terminate (frontend, 'X'): the client is closing the session.

super::empty_message!(
    /// Terminate (frontend, 'X'): the client is closing the session.
    Terminate,
    b'X'
);
