//! fathom-dashboards
