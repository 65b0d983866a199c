//! NoData (backend, 'n'): the described statement or portal returns no rows.

super::empty_message!(
    /// NoData (backend, 'n'): the described statement or portal returns no rows.
    NoData,
    b'n'
);
