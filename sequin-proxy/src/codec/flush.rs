//! Flush (frontend, 'H'): asks the server to send its pending output without ending the pipeline.

super::empty_message!(
    /// Flush (frontend, 'H'): asks the server to send its pending output without ending the pipeline.
    Flush,
    b'H'
);
