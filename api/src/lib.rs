//! The HTTP surface of `fathom serve`: JSON for portal pages keyed by entity
//! ref, SQL for analysts over HTTP and the PostgreSQL wire protocol, webhook
//! intake, OIDC and API-token auth with roles, the scheduler, and the
//! dashboards' assets.
//!
//! The only crate that knows HTTP, with one error-to-status mapping. No code
//! yet; the read-only SQL guard and result encoders it will serve already
//! live in `fathom_warehouse::query`, and API tokens in the state database.
