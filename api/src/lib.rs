//! fathom-api
