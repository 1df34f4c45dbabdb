//! fathom-ingest
