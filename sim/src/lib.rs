//! fathom-sim
