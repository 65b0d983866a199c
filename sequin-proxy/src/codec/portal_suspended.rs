//! PortalSuspended (backend, 's'): an Execute hit its row limit.

super::empty_message!(
    /// PortalSuspended (backend, 's'): an Execute hit its row limit.
    PortalSuspended,
    b's'
);
