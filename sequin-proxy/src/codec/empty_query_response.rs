//! EmptyQueryResponse (backend, 'I'): the query string was empty.

super::empty_message!(
    /// EmptyQueryResponse (backend, 'I'): the query string was empty.
    EmptyQueryResponse,
    b'I'
);
