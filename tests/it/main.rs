//! End-to-end tests of Fathom, in one binary (linking the data stack once).

mod accuracy;
mod alerts;
mod anomalies;
mod api;
mod browser;
mod cdp;
mod cli;
mod cost;
mod crash;
mod dora;
mod files;
mod golden;
mod import;
mod ingest;
mod interop;
mod oidc;
mod pgwire;
mod risk;
mod s3;
mod scale;
mod schedule;
mod security;
mod support;
mod usage;
mod webhooks;
