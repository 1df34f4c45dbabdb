//! One module per upstream: its config, client, fetch and (pure) decode.

pub mod argocd;
pub mod backstage;
pub mod datadog;
pub mod github;

#[cfg(test)]
mod tests;
