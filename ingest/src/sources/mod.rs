//! One module per upstream: its config, client, fetch and (pure) decode.

pub mod argocd;
pub mod backstage;
pub mod datadog;
pub mod github;
pub mod opencost;
pub mod sentry;

#[cfg(test)]
mod tests;
