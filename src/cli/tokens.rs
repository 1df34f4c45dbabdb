//! `fathom tokens`: API tokens, created and revoked with an audit record.

use std::process::ExitCode;

use anyhow::{Result, bail};

use super::{Config, TokensCommand, local_actor, open_state};

/// `fathom tokens …`.
pub(super) async fn tokens(config: &Config, command: TokensCommand) -> Result<ExitCode> {
    use fathom_api::ROLES;
    let state = open_state(config).await?;
    match command {
        TokensCommand::Create {
            name,
            role,
            teams,
            expires_days,
        } => {
            if !ROLES.contains(&role.as_str()) {
                bail!("--role `{role}`: use one of {}", ROLES.join(", "));
            }
            if role == "contractor" && teams.is_empty() {
                bail!("a contractor token needs --teams: contractors see only the teams listed");
            }
            let expires = expires_days.map(|d| chrono::Utc::now() + chrono::Duration::days(d));
            let (token, secret) = state.create_token(&name, &role, &teams, expires).await?;
            state
                .audit(
                    &local_actor(),
                    "token.create",
                    Some(&token.token_id),
                    &serde_json::json!({"name": name, "role": role, "teams": teams, "expires_at": expires}),
                )
                .await?;
            println!(
                "token {} ({role}) created; its secret, shown only now:",
                token.token_id
            );
            println!("{}", secret.expose());
        }
        TokensCommand::List => {
            println!(
                "{:<38} {:<20} {:<12} {:<24} status",
                "id", "name", "role", "teams"
            );
            for token in state.tokens().await? {
                let status = if token.revoked_at.is_some() {
                    "revoked"
                } else if token.expires_at.is_some_and(|e| e < chrono::Utc::now()) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:<38} {:<20} {:<12} {:<24} {status}",
                    token.token_id,
                    token.name,
                    token.role,
                    token.teams.join(",")
                );
            }
        }
        TokensCommand::Revoke { token_id } => {
            if !state.revoke_token(&token_id).await? {
                bail!("no active token `{token_id}`");
            }
            state
                .audit(
                    &local_actor(),
                    "token.revoke",
                    Some(&token_id),
                    &serde_json::json!({}),
                )
                .await?;
            println!("token {token_id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}
