//! Operator library.
