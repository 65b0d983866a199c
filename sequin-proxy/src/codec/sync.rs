//! Sync (frontend, 'S'): ends an extended-protocol pipeline; the server answers ReadyForQuery.

super::empty_message!(
    /// Sync (frontend, 'S'): ends an extended-protocol pipeline; the server answers ReadyForQuery.
    Sync,
    b'S'
);
