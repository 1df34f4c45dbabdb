//! fathom-ml
