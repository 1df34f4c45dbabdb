//! Dashboards for engineering leaders: declarative panel files (a query over
//! marts plus a chart spec) and the web assets, embedded in the binary so the
//! pages work offline (no CDN, no external fonts).
//!
//! No code yet; dashboards follow the API.
