//! nats sink (in progress).
