//! fathom-transforms
