//! OIDC bearer tokens against `fathom serve`: JWTs signed by a stand-in
//! identity provider (its JWKS served on loopback) are accepted with the
//! role from a nested claim, expired or foreign ones are refused, a
//! contractor's groups limit what it sees, and a key rotation at the
//! provider is picked up without a restart.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use base64::Engine;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::serve;
use crate::dora::{WORKED_EXAMPLE, load_and_transform};

/// A signing key of the stand-in provider.
struct Key {
    kid: String,
    private_pem: String,
    jwk: Value,
}

fn key(kid: &str) -> Result<Key> {
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
    let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let public = private.to_public_key();
    Ok(Key {
        kid: kid.to_owned(),
        private_pem: private
            .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)?
            .to_string(),
        jwk: json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": b64(public.n().to_bytes_be()), "e": b64(public.e().to_bytes_be()),
        }),
    })
}

/// Serves whatever JWKS `keys` holds, to every request.
async fn jwks_server(keys: Arc<Mutex<Value>>) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = keys.lock().map(|k| k.to_string()).unwrap_or_default();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(format!(
        "http://{addr}/realms/eng/protocol/openid-connect/certs"
    ))
}

const ISSUER: &str = "https://sso.example.com/realms/eng";

fn jwt(key: &Key, claims: Value) -> Result<String> {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(key.kid.clone());
    Ok(jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(key.private_pem.as_bytes())?,
    )?)
}

fn claims(roles: &[&str], groups: &[&str], expires_in: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": ISSUER, "aud": "fathom", "sub": "user-1",
        "iat": now, "exp": now + expires_in,
        "realm_access": {"roles": roles}, "groups": groups,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_tokens_are_verified_against_the_providers_rotating_keys() -> Result<()> {
    let dir = tempfile::tempdir()?;
    load_and_transform(dir.path(), &WORKED_EXAMPLE)?;
    let first = key("key-1")?;
    let second = key("key-2")?;
    let published = Arc::new(Mutex::new(json!({"keys": [first.jwk]})));
    let jwks = jwks_server(published.clone()).await?;
    let config = dir.path().join("fathom.toml");
    std::fs::write(
        &config,
        format!(
            "[api.oidc]\nissuer = \"{ISSUER}\"\naudience = \"fathom\"\njwks_url = \"{jwks}\"\n\
             roles_claim = \"realm_access.roles\"\n[api.oidc.role_map]\n\"fathom-analysts\" = \"analyst\"\n"
        ),
    )?;
    let config = config.display().to_string();
    let server = serve(dir.path(), &[("FATHOM_CONFIG", &config)], "127.0.0.1:0")?;
    let http = reqwest::Client::new();
    let get = |path: &str, token: &str| {
        http.get(format!("{}{path}", server.base))
            .bearer_auth(token)
            .send()
    };
    let dora = "/api/v1/dora/component%3Adefault%2Fpayments-api?window=30d";

    // A mapped role from a nested claim: analysts read metrics and SQL.
    let analyst = jwt(
        &first,
        claims(&["offline_access", "fathom-analysts"], &[], 300),
    )?;
    let answer = get(dora, &analyst).await?;
    assert_eq!(answer.status(), 200);
    let sql = http
        .post(format!("{}/api/v1/sql", server.base))
        .bearer_auth(&analyst)
        .header("accept", "text/csv")
        .json(&json!({"sql": "SELECT count(*) AS n FROM dora_metrics WHERE scope = 'org' AND window_days = 30 AND environment = 'all'"}))
        .send()
        .await?;
    assert_eq!(sql.status(), 200);
    assert_eq!(sql.text().await?, "n\n1\n");

    // Expired, for another audience, or signed by a stranger: 401.
    let expired = jwt(&first, claims(&["viewer"], &[], -120))?;
    let refused = get(dora, &expired).await?;
    assert_eq!(refused.status(), 401);
    let message = refused.json::<Value>().await?["error"]["message"].to_string();
    assert!(message.contains("xpired"), "{message}");
    let mut foreign = claims(&["viewer"], &[], 300);
    foreign["aud"] = json!("another-app");
    assert_eq!(get(dora, &jwt(&first, foreign)?).await?.status(), 401);
    let forged = Key {
        kid: "key-1".to_owned(),
        ..key("stranger")?
    };
    assert_eq!(
        get(dora, &jwt(&forged, claims(&["admin"], &[], 300))?)
            .await?
            .status(),
        401
    );
    // Valid but without a Fathom role: 403.
    assert_eq!(
        get(dora, &jwt(&first, claims(&["offline_access"], &[], 300))?)
            .await?
            .status(),
        403
    );

    // A contractor sees only the teams its groups claim names.
    let contractor = jwt(&first, claims(&["contractor"], &["team-elsewhere"], 300))?;
    assert_eq!(get(dora, &contractor).await?.status(), 403);
    let mine: Value = get("/api/v1/entities", &contractor).await?.json().await?;
    assert_eq!(mine["entities"].as_array().map(Vec::len), Some(0));
    let sql = http
        .post(format!("{}/api/v1/sql", server.base))
        .bearer_auth(&contractor)
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await?;
    assert_eq!(sql.status(), 403);

    // The provider rotates to a new key: tokens signed with it work at once
    // (the unknown key id makes the server fetch the keys again).
    *published.lock().map_err(|e| anyhow::anyhow!("{e}"))? = json!({"keys": [second.jwk]});
    tokio::time::sleep(std::time::Duration::from_millis(
        fathom_api::oidc::MIN_REFETCH.as_millis() as u64 + 200,
    ))
    .await;
    let rotated = jwt(&second, claims(&["viewer"], &[], 300))?;
    assert_eq!(get(dora, &rotated).await?.status(), 200);
    Ok(())
}
