//! The server attacked as a hostile but authenticated user would: who may
//! read what (a role × scope matrix over every read endpoint), query abuse
//! over HTTP and the PostgreSQL protocol, connection abuse, input holes,
//! and a kill campaign. `docs/security.md` lists what each test guarantees.

mod abuse;
mod chaos;
mod connections;
mod fuzz;
mod inputs;
mod matrix;
mod pgclient;

use std::path::Path;

use anyhow::{Result, bail};

use crate::api::{Server, serve, token};
use crate::dora::load_and_transform;

/// A small organisation with the shapes the scope rule must get right: a
/// department (`engineering`) over two teams, one of them (`team-a`) with
/// a sub-team, each owning one service, all in one system.
pub(crate) const ORGANISATION: [(&str, &str, &str); 3] = [
    (
        "catalog_entities",
        "catalog.ndjson",
        concat!(
            r#"{"entity_ref": "group:default/engineering", "kind": "group", "namespace": "default", "name": "engineering"}"#,
            "\n",
            r#"{"entity_ref": "group:default/team-a", "kind": "group", "namespace": "default", "name": "team-a", "parent_ref": "group:default/engineering"}"#,
            "\n",
            r#"{"entity_ref": "group:default/team-a-sub", "kind": "group", "namespace": "default", "name": "team-a-sub", "parent_ref": "group:default/team-a"}"#,
            "\n",
            r#"{"entity_ref": "group:default/team-b", "kind": "group", "namespace": "default", "name": "team-b", "parent_ref": "group:default/engineering"}"#,
            "\n",
            r#"{"entity_ref": "component:default/svc-a", "kind": "component", "namespace": "default", "name": "svc-a", "owner_ref": "group:default/team-a", "system_ref": "system:default/shop"}"#,
            "\n",
            r#"{"entity_ref": "component:default/svc-a-sub", "kind": "component", "namespace": "default", "name": "svc-a-sub", "owner_ref": "group:default/team-a-sub", "system_ref": "system:default/shop"}"#,
            "\n",
            r#"{"entity_ref": "component:default/svc-b", "kind": "component", "namespace": "default", "name": "svc-b", "owner_ref": "group:default/team-b", "system_ref": "system:default/shop"}"#,
            "\n",
            r#"{"entity_ref": "system:default/shop", "kind": "system", "namespace": "default", "name": "shop", "domain_ref": "domain:default/retail"}"#,
            "\n"
        ),
    ),
    (
        "deployments",
        "deployments.csv",
        "deployment_id,source,entity_ref,environment,status,revision,started_at,finished_at\n\
         a1,import,svc-a,production,success,r1,2026-06-20T09:50:00Z,2026-06-20T10:00:00Z\n\
         a2,import,svc-a,production,failure,r2,2026-06-22T09:50:00Z,2026-06-22T10:00:00Z\n\
         s1,import,svc-a-sub,production,success,r3,2026-06-21T09:50:00Z,2026-06-21T10:00:00Z\n\
         b1,import,svc-b,production,success,r4,2026-06-23T09:50:00Z,2026-06-23T10:00:00Z\n\
         b2,import,svc-b,production,success,r5,2026-06-24T09:50:00Z,2026-06-24T10:00:00Z\n\
         b3,import,svc-b,production,success,r6,2026-06-25T09:50:00Z,2026-06-25T10:00:00Z\n",
    ),
    (
        "incidents",
        "incidents.csv",
        "incident_id,source,entity_ref,title,created_at,resolved_at\n\
         INC-A,import,svc-a,Checkout slow,2026-06-22T10:30:00Z,2026-06-22T12:00:00Z\n\
         INC-B,import,svc-b,Search down,2026-06-24T10:30:00Z,2026-06-24T11:00:00Z\n",
    ),
];

/// A served organisation with a token per role.
pub(crate) struct World {
    pub dir: tempfile::TempDir,
    pub server: Server,
    pub admin: String,
    pub analyst: String,
    pub viewer: String,
    pub cost_viewer: String,
    /// A contractor limited to `team-a`.
    pub contractor: String,
}

impl World {
    /// Loads [`ORGANISATION`], creates the tokens and starts `fathom serve`
    /// with `envs`.
    pub(crate) fn start(envs: &[(&str, &str)]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        load_and_transform(dir.path(), &ORGANISATION)?;
        let admin = token(dir.path(), "admin", "")?;
        let analyst = token(dir.path(), "analyst", "")?;
        let viewer = token(dir.path(), "viewer", "")?;
        let cost_viewer = token(dir.path(), "cost-viewer", "")?;
        let contractor = token(dir.path(), "contractor", "team-a")?;
        let server = serve(dir.path(), envs, "127.0.0.1:0")?;
        Ok(Self {
            dir,
            server,
            admin,
            analyst,
            viewer,
            cost_viewer,
            contractor,
        })
    }

    /// The PostgreSQL endpoint's port.
    pub(crate) fn pg_port(&self) -> Result<u16> {
        match self.server.postgres_port {
            Some(port) => Ok(port),
            None => bail!("the PostgreSQL endpoint did not start"),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The audit log as JSON records (`fathom audit --json`).
pub(crate) fn audit_log(dir: &Path) -> Result<Vec<serde_json::Value>> {
    let output = crate::dora::fathom_in(dir, &["audit", "--json", "--limit", "1000"])?;
    if !output.status.success() {
        bail!("audit: {}", String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8(output.stdout)?;
    // One record per line.
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<Vec<serde_json::Value>, _>>()?)
}

/// Resident memory of process `pid`, bytes.
pub(crate) fn resident_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok());
    match kib {
        Some(kib) => Ok(kib * 1024),
        None => bail!("no VmRSS for {pid}"),
    }
}
