//! Go's text/template semantics that the recorded table does not reach.
