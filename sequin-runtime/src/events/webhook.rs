//! webhook sink (in progress).
