//! DORA on the shapes real history has: each defect found by checking the
//! marts against an external set of DORA cases is reproduced here by its
//! smallest history, imported from files as a new user would, with the
//! numbers the documented rules give (`docs/metrics.md`, "Data quality
//! rules").

use anyhow::{Context, Result};

use crate::dora::{fathom_in, load_and_transform};
use crate::support::{local_warehouse, rows};

fn table(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|c| (*c).to_owned()).collect())
        .collect()
}

const CATALOG: (&str, &str, &str) = (
    "catalog_entities",
    "catalog.ndjson",
    r#"{"entity_ref": "component:default/svc", "kind": "component", "namespace": "default", "name": "svc", "owner_ref": "team-a"}"#,
);

/// A baseline and one deployment 2026-06-20 10:00 that ships two changes.
const TWO_DEPLOYMENTS: (&str, &str, &str) = (
    "deployments",
    "deployments.csv",
    "deployment_id,source,entity_ref,environment,status,repository_id,started_at,finished_at\n\
     b1,import,svc,production,success,acme/svc,2026-06-10T09:50:00Z,2026-06-10T10:00:00Z\n\
     d2,import,svc,production,success,acme/svc,2026-06-20T09:50:00Z,2026-06-20T10:00:00Z\n",
);

/// Defect 1: a change whose first commit is dated after the deployment
/// that shipped it (rebased history, clock skew) had a negative lead time
/// (−50,400 s here) that pulled the median down and could grade it elite.
/// Its lead time is unknown: null, outside the percentiles, counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_lead_time_is_null_and_counted_as_an_anomaly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let files = [
        CATALOG,
        TWO_DEPLOYMENTS,
        (
            "deployment_changes",
            "changes.csv",
            "deployment_id,sha,repository_id\nd2,c1,acme/svc\nd2,c2,acme/svc\n",
        ),
        (
            "pull_requests",
            "pulls.csv",
            "repository_id,number,state,entity_ref,created_at,first_commit_at,merged_at\n\
             acme/svc,1,merged,svc,2026-06-19T08:00:00Z,2026-06-21T00:00:00Z,2026-06-20T08:00:00Z\n\
             acme/svc,2,merged,svc,2026-06-19T11:00:00Z,2026-06-18T10:00:00Z,2026-06-20T09:00:00Z\n",
        ),
        (
            "pull_request_commits",
            "pull_commits.csv",
            "repository_id,pull_request_number,sha\nacme/svc,1,c1\nacme/svc,2,c2\n",
        ),
    ];
    load_and_transform(dir.path(), &files)?;
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    assert_eq!(
        rows(
            &warehouse,
            "SELECT change_id, coalesce(CAST(lead_time_seconds AS VARCHAR), 'null'), \
             CAST(lead_time_anomaly AS VARCHAR) FROM dora_changes ORDER BY change_id",
        )
        .await?,
        table(&[
            &["pr:acme/svc#1", "null", "true"],
            &["pr:acme/svc#2", "172800.0", "false"],
        ])
    );
    // Both changes count; only the one with a lead time is in its median
    // (before: the median of −50,400 and 172,800, graded elite).
    assert_eq!(
        rows(
            &warehouse,
            "SELECT changes, CAST(lead_time_p50_seconds AS VARCHAR), lead_time_anomalies, lead_time_tier \
             FROM dora_metrics WHERE scope = 'component:default/svc' AND window_days = 30 \
             AND environment = 'all'",
        )
        .await?,
        table(&[&["2", "172800.0", "1", "high"]])
    );
    Ok(())
}

/// Defects 2 and 3: one definition of "shipped first" for both marts.
/// The baseline carries one commit of pull request 8 and the next
/// deployment its merge commit: the next deployment ships it (and counts
/// it). A pushed commit nobody describes (no pull request, no `commits`
/// row) is still a change of the deployment that shipped it. A change set
/// row naming its pull request is enough to tie the commit to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_counted_change_is_a_row_and_every_row_is_counted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let files = [
        CATALOG,
        TWO_DEPLOYMENTS,
        (
            "deployment_changes",
            "changes.csv",
            "deployment_id,sha,repository_id,pull_request_number\n\
             b1,c8a,acme/svc,\n\
             d2,m8,acme/svc,\n\
             d2,zz9,acme/svc,\n\
             d2,c12,acme/svc,12\n",
        ),
        (
            "pull_requests",
            "pulls.csv",
            "repository_id,number,state,entity_ref,created_at,first_commit_at,merged_at,merge_commit_sha\n\
             acme/svc,8,merged,svc,2026-06-09T10:00:00Z,2026-06-09T09:00:00Z,2026-06-19T10:00:00Z,m8\n\
             acme/svc,12,merged,svc,2026-06-18T10:00:00Z,2026-06-18T09:00:00Z,2026-06-19T12:00:00Z,\n",
        ),
        (
            "pull_request_commits",
            "pull_commits.csv",
            "repository_id,pull_request_number,sha\nacme/svc,8,c8a\n",
        ),
    ];
    load_and_transform(dir.path(), &files)?;
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    assert_eq!(
        rows(
            &warehouse,
            "SELECT deployment_id, coalesce(CAST(change_count AS VARCHAR), 'null') \
             FROM dora_deployments ORDER BY deployment_id",
        )
        .await?,
        table(&[&["b1", "0"], &["d2", "3"]])
    );
    assert_eq!(
        rows(
            &warehouse,
            "SELECT change_id, coalesce(entity_ref, 'null'), coalesce(deployment_id, 'null'), \
             coalesce(CAST(lead_time_seconds AS VARCHAR), 'null') FROM dora_changes ORDER BY change_id",
        )
        .await?,
        table(&[
            &["pr:acme/svc#12", "component:default/svc", "d2", "176400.0"],
            &["pr:acme/svc#8", "component:default/svc", "d2", "954000.0"],
            &["push:acme/svc@zz9", "component:default/svc", "d2", "null"],
        ])
    );
    Ok(())
}

/// Defect 4: `SUCCESS` imported without a word and counted as a failed
/// job. Statuses are normalised where rows enter (case, each upstream's
/// synonyms); an unknown status is quarantined with a reason, never
/// guessed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_statuses_are_normalised_or_quarantined() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let files = [
        CATALOG,
        (
            "deployments",
            "deployments.csv",
            "deployment_id,source,entity_ref,environment,status,started_at,finished_at\n\
             a,import,svc,PRODUCTION,SUCCESS,2026-06-10T09:50:00Z,2026-06-10T10:00:00Z\n\
             b,import,svc,production,Succeeded,2026-06-11T09:50:00Z,2026-06-11T10:00:00Z\n\
             c,import,svc,production,completed,2026-06-12T09:50:00Z,2026-06-12T10:00:00Z\n\
             d,import,svc,production,FAILED,2026-06-13T09:50:00Z,2026-06-13T10:00:00Z\n\
             e,import,svc,production,Error,2026-06-14T09:50:00Z,2026-06-14T10:00:00Z\n\
             f,import,svc,production,canceled,2026-06-15T09:50:00Z,2026-06-15T10:00:00Z\n\
             g,import,svc,production,shipped-ish,2026-06-16T09:50:00Z,2026-06-16T10:00:00Z\n",
        ),
    ];
    load_and_transform(dir.path(), &files)?;
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    assert_eq!(
        rows(
            &warehouse,
            "SELECT deployment_id, status FROM deployments ORDER BY deployment_id",
        )
        .await?,
        table(&[
            &["a", "success"],
            &["b", "success"],
            &["c", "success"],
            &["d", "failure"],
            &["e", "error"],
            &["f", "cancelled"],
        ])
    );
    let quarantined = rows(
        &warehouse,
        "SELECT column_name, reason FROM quarantine WHERE stream = 'deployments'",
    )
    .await?;
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(quarantined[0][0], "status");
    assert!(
        quarantined[0][1].contains("shipped-ish") && quarantined[0][1].contains("success"),
        "{}",
        quarantined[0][1]
    );
    assert_eq!(
        rows(
            &warehouse,
            "SELECT deployments, failed_jobs FROM dora_metrics \
             WHERE scope = 'component:default/svc' AND window_days = 30 AND environment = 'all'",
        )
        .await?,
        table(&[&["3", "3"]])
    );
    Ok(())
}

/// Defect 5: `dora_tier()` was documented as a SQL function but unknown to
/// `fathom sql`. Every function the marts use is there, and each example
/// of `docs/metrics.md` gives the answer the document prints.
#[test]
fn the_documented_sql_functions_answer_in_fathom_sql() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md"),
    )?;
    for example in fathom_transforms::functions::EXAMPLES {
        assert!(
            doc.contains(example.sql) && doc.contains(example.answer),
            "docs/metrics.md does not show `{}` → {}",
            example.sql,
            example.answer
        );
        let output = fathom_in(
            dir.path(),
            &[
                "sql",
                &format!("SELECT {} AS answer", example.sql),
                "--format",
                "csv",
            ],
        )?;
        assert!(
            output.status.success(),
            "{}: {}",
            example.sql,
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            format!("answer\n{}\n", example.answer),
            "{}",
            example.sql
        );
    }
    Ok(())
}

/// The README's "Import your history" walkthrough, run as written: each
/// `fathom` line of its block in a fresh directory (with `examples/`
/// beside it), the last one's output compared with the README's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_import_walkthrough_in_the_readme_runs_as_written() -> Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    let block = readme
        .split("<!-- walkthrough -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- /walkthrough -->").next())
        .context("README.md has no walkthrough block")?;
    let mut fences = block.split("```").skip(1).step_by(2);
    let commands = fences
        .next()
        .and_then(|c| c.strip_prefix("sh\n"))
        .context("no sh block")?;
    let expected = fences
        .next()
        .and_then(|c| c.strip_prefix("text\n"))
        .context("no text block")?;
    let dir = tempfile::tempdir()?;
    std::os::unix::fs::symlink(root.join("examples"), dir.path().join("examples"))?;
    let mut last = String::new();
    for line in commands.lines().filter(|l| !l.trim().is_empty()) {
        let args = shell_words(line)?;
        anyhow::ensure!(args.first().map(String::as_str) == Some("fathom"), "{line}");
        let output = std::process::Command::new(crate::support::fathom_bin())
            .args(&args[1..])
            .current_dir(dir.path())
            .env_remove("FATHOM_WAREHOUSE__URL")
            .env_remove("FATHOM_STATE__DATABASE_URL")
            .env_remove("FATHOM_CONFIG")
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        anyhow::ensure!(output.status.success(), "{line}: {stderr}");
        // The export's rows all map to the catalog: no warning.
        anyhow::ensure!(!stderr.contains("warning"), "{line}: {stderr}");
        last = String::from_utf8_lossy(&output.stdout).into_owned();
    }
    assert_eq!(last, expected);

    // What the walkthrough's prose says was derived.
    let warehouse = local_warehouse(&dir.path().join("history-data"))?;
    assert_eq!(
        rows(
            &warehouse,
            "SELECT change_id, entity_ref, CAST(first_commit_at AS VARCHAR), \
             coalesce(CAST(pickup_seconds AS VARCHAR), 'null') FROM dora_changes ORDER BY change_id",
        )
        .await?,
        table(&[
            &["pr:acme/checkout#101", "component:default/checkout", "2026-11-02T14:00:00Z", "14400.0"],
            &["pr:acme/checkout#102", "component:default/checkout", "2026-11-07T16:00:00Z", "18000.0"],
            &["pr:acme/checkout#103", "component:default/checkout", "2026-11-11T09:00:00Z", "7200.0"],
            &["push:acme/checkout@p1", "component:default/checkout", "2026-11-09T15:30:00Z", "null"],
        ])
    );
    assert_eq!(
        rows(
            &warehouse,
            "SELECT count(*) FROM deployments WHERE entity_ref = 'component:default/checkout' AND status IN ('success', 'failure')",
        )
        .await?,
        table(&[&["5"]])
    );
    Ok(())
}

/// Splits a command line as a POSIX shell would for the quoting the
/// README uses (double quotes, no escapes).
fn shell_words(line: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            c => {
                current.push(c);
                started = true;
            }
        }
    }
    anyhow::ensure!(!quoted, "unbalanced quotes in {line}");
    if started {
        words.push(current);
    }
    Ok(words)
}

/// Reverts as failures: a merged pull request reverting an earlier one
/// (GitHub's `revert-<n>-…` branch; a title ending `(#<n>)"`; the title
/// `Revert "<title>"`) or a pushed `Revert "<message>"` commit fails the
/// deployment that shipped the reverted change, recovered when the revert
/// shipped — unless an incident already failed it (then it is not counted
/// again as failed by revert).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reverted_change_fails_the_deployment_that_shipped_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let files = [
        CATALOG,
        (
            "deployments",
            "deployments.csv",
            "deployment_id,source,entity_ref,environment,status,repository_id,started_at,finished_at\n\
             b1,import,svc,production,success,acme/svc,2026-06-01T09:50:00Z,2026-06-01T10:00:00Z\n\
             d2,import,svc,production,success,acme/svc,2026-06-02T09:50:00Z,2026-06-02T10:00:00Z\n\
             d3,import,svc,production,success,acme/svc,2026-06-03T09:50:00Z,2026-06-03T10:00:00Z\n\
             d4,import,svc,production,success,acme/svc,2026-06-04T09:50:00Z,2026-06-04T10:00:00Z\n\
             d5,import,svc,production,success,acme/svc,2026-06-05T09:50:00Z,2026-06-05T10:00:00Z\n\
             d6,import,svc,production,success,acme/svc,2026-06-06T09:50:00Z,2026-06-06T10:00:00Z\n\
             d7,import,svc,production,success,acme/svc,2026-06-07T09:50:00Z,2026-06-07T10:00:00Z\n",
        ),
        (
            "deployment_changes",
            "changes.csv",
            "deployment_id,sha,repository_id\n\
             d2,m21,acme/svc\n\
             d3,m22,acme/svc\n\
             d3,m30,acme/svc\n\
             d4,m31,acme/svc\n\
             d4,x1,acme/svc\n\
             d5,x2,acme/svc\n\
             d5,m40,acme/svc\n\
             d6,m41,acme/svc\n\
             d7,m50,acme/svc\n",
        ),
        (
            "pull_requests",
            "pulls.csv",
            "repository_id,number,title,state,head_branch,entity_ref,created_at,merged_at,merge_commit_sha\n\
             acme/svc,21,Add cache,merged,add-cache,svc,2026-06-01T12:00:00Z,2026-06-01T13:00:00Z,m21\n\
             acme/svc,22,Revert \"Add cache\",merged,revert-21-add-cache,svc,2026-06-02T12:00:00Z,2026-06-02T13:00:00Z,m22\n\
             acme/svc,30,Retry,merged,retry,svc,2026-06-02T12:00:00Z,2026-06-02T14:00:00Z,m30\n\
             acme/svc,31,Revert \"Retry (#30)\",merged,undo,svc,2026-06-03T12:00:00Z,2026-06-03T13:00:00Z,m31\n\
             acme/svc,40,Bigger pool,merged,pool,svc,2026-06-04T12:00:00Z,2026-06-04T13:00:00Z,m40\n\
             acme/svc,41,Revert \"Bigger pool\",merged,undo-pool,svc,2026-06-05T12:00:00Z,2026-06-05T13:00:00Z,m41\n\
             acme/svc,50,Docs,merged,docs,svc,2026-06-06T12:00:00Z,2026-06-06T13:00:00Z,m50\n",
        ),
        (
            "commits",
            "commits.csv",
            "repository_id,sha,message,authored_at,committed_at\n\
             acme/svc,x1,Tune timeouts,2026-06-03T11:00:00Z,2026-06-03T11:00:00Z\n\
             acme/svc,x2,Revert \"Tune timeouts\",2026-06-04T11:00:00Z,2026-06-04T11:00:00Z\n",
        ),
        (
            "incidents",
            "incidents.csv",
            "incident_id,source,entity_ref,created_at,resolved_at\n\
             INC-1,import,svc,2026-06-05T11:00:00Z,2026-06-05T12:00:00Z\n",
        ),
    ];
    load_and_transform(dir.path(), &files)?;
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    // d2 shipped #21, reverted by #22 (branch) shipped by d3: failed,
    // recovered in a day. d3 shipped #30, reverted by #31 (title number)
    // shipped by d4. d4 shipped push x1, reverted by push x2 (message) in
    // d5. d5 shipped #40, reverted by #41 (title) in d6, but INC-1 already
    // failed d5: failed, not by revert. d6 and d7 revert nothing reverted.
    assert_eq!(
        rows(
            &warehouse,
            "SELECT deployment_id, CAST(failed AS VARCHAR), CAST(failed_by_revert AS VARCHAR), \
             coalesce(reverted_by, '-'), coalesce(CAST(recovery_seconds AS VARCHAR), '-') \
             FROM dora_deployments ORDER BY deployment_id",
        )
        .await?,
        table(&[
            &["b1", "false", "false", "-", "-"],
            &["d2", "true", "true", "pr:acme/svc#22", "86400.0"],
            &["d3", "true", "true", "pr:acme/svc#31", "86400.0"],
            &["d4", "true", "true", "push:acme/svc@x2", "86400.0"],
            &["d5", "true", "false", "pr:acme/svc#41", "7200.0"],
            &["d6", "false", "false", "-", "-"],
            &["d7", "false", "false", "-", "-"],
        ])
    );
    assert_eq!(
        rows(
            &warehouse,
            "SELECT deployments, failed_deployments, failed_by_revert, CAST(change_failure_rate AS VARCHAR) \
             FROM dora_metrics WHERE scope = 'component:default/svc' AND window_days = 30 AND environment = 'all'",
        )
        .await?,
        table(&[&["7", "4", "3", "0.5714285714285714"]])
    );
    // Switched off, a revert fails nothing (and is still shown).
    let output = std::process::Command::new(crate::support::fathom_bin())
        .args(["transform", "--as-of", "2026-07-01"])
        .env("FATHOM_WAREHOUSE__URL", dir.path().join("data"))
        .env("FATHOM_TRANSFORMS__REVERTS_ARE_FAILURES", "false")
        .env_remove("FATHOM_STATE__DATABASE_URL")
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        rows(
            &warehouse,
            "SELECT failed_deployments, failed_by_revert FROM dora_metrics \
             WHERE scope = 'component:default/svc' AND window_days = 30 AND environment = 'all'",
        )
        .await?,
        table(&[&["1", "0"]])
    );
    Ok(())
}

/// Monorepos: billing and search deploy from one repository. Each ships
/// only the commits touching its source paths (`fathom.dev/source-paths`;
/// search's from its `backstage.io/source-location`), a change touching
/// both counts for each, a commit whose files are unknown is kept, and one
/// touching neither ships nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monorepo_components_ship_only_the_changes_touching_their_paths() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let files = [
        (
            "catalog_entities",
            "catalog.ndjson",
            concat!(
                r#"{"entity_ref": "component:default/billing", "kind": "component", "namespace": "default", "name": "billing", "annotations": {"github.com/project-slug": "acme/mono", "fathom.dev/source-paths": "services/billing, libs/money/"}}"#,
                "\n",
                r#"{"entity_ref": "component:default/search", "kind": "component", "namespace": "default", "name": "search", "annotations": {"backstage.io/source-location": "url:https://github.com/acme/mono/tree/main/services/search/"}}"#,
                "\n"
            ),
        ),
        (
            "deployments",
            "deployments.csv",
            "deployment_id,source,entity_ref,environment,status,repository_id,started_at,finished_at\n\
             b0,import,billing,production,success,acme/mono,2026-06-01T09:50:00Z,2026-06-01T10:00:00Z\n\
             b1,import,billing,production,success,acme/mono,2026-06-10T09:50:00Z,2026-06-10T10:00:00Z\n\
             s0,import,search,production,success,acme/mono,2026-06-01T09:50:00Z,2026-06-01T10:00:00Z\n\
             s1,import,search,production,success,acme/mono,2026-06-11T09:50:00Z,2026-06-11T10:00:00Z\n",
        ),
        (
            "deployment_changes",
            "changes.csv",
            "deployment_id,sha,repository_id\n\
             b1,c1,acme/mono\nb1,c2,acme/mono\nb1,c3,acme/mono\nb1,p4,acme/mono\nb1,c5,acme/mono\n\
             s1,c1,acme/mono\ns1,c2,acme/mono\ns1,c3,acme/mono\ns1,p4,acme/mono\ns1,c5,acme/mono\n",
        ),
        (
            "pull_request_commits",
            "pull_commits.csv",
            "repository_id,pull_request_number,sha\n\
             acme/mono,1,c1\nacme/mono,2,c2\nacme/mono,3,c3\nacme/mono,5,c5\n",
        ),
        (
            "commit_files",
            "files.csv",
            "repository_id,sha,path\n\
             acme/mono,c1,services/billing/api.rs\n\
             acme/mono,c2,services/search/index.rs\n\
             acme/mono,c3,libs/money/round.rs\n\
             acme/mono,c3,services/search/rank.rs\n\
             acme/mono,p4,README.md\n\
             acme/mono,p4,services/billing-old/notes.md\n",
        ),
    ];
    load_and_transform(dir.path(), &files)?;
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    assert_eq!(
        rows(
            &warehouse,
            "SELECT deployment_id, CAST(change_count AS VARCHAR) FROM dora_deployments ORDER BY deployment_id",
        )
        .await?,
        table(&[&["b0", "0"], &["b1", "3"], &["s0", "0"], &["s1", "3"]])
    );
    assert_eq!(
        rows(
            &warehouse,
            "SELECT change_id, entity_ref, deployment_id FROM dora_changes ORDER BY change_id, entity_ref",
        )
        .await?,
        table(&[
            &["pr:acme/mono#1", "component:default/billing", "b1"],
            &["pr:acme/mono#2", "component:default/search", "s1"],
            &["pr:acme/mono#3", "component:default/billing", "b1"],
            &["pr:acme/mono#3", "component:default/search", "s1"],
            &["pr:acme/mono#5", "component:default/billing", "b1"],
            &["pr:acme/mono#5", "component:default/search", "s1"],
        ])
    );
    Ok(())
}

/// Incident links: explicit beats version beats nearest-before. An
/// incident naming the version it was seen on links to the latest
/// deployment that ran it — the revision itself, or a release whose
/// deploys name the revision — with no time limit; an unknown version
/// falls back to the nearest earlier deployment within the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_link_by_explicit_id_then_version_then_nearness() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let files = [
        CATALOG,
        (
            "deployments",
            "deployments.csv",
            "deployment_id,source,entity_ref,environment,status,revision,started_at,finished_at\n\
             b1,import,svc,production,success,r1,2026-06-01T09:50:00Z,2026-06-01T10:00:00Z\n\
             d2,import,svc,production,success,r2,2026-06-10T09:50:00Z,2026-06-10T10:00:00Z\n\
             d3,import,svc,production,success,r3,2026-06-12T09:50:00Z,2026-06-12T10:00:00Z\n",
        ),
        (
            "release_deploys",
            "releases.csv",
            "source,deploy_id,release_version,revision,entity_ref,environment,finished_at\n\
             sentry,sentry:1,1.4.0,r1,svc,production,2026-06-01T10:00:00Z\n",
        ),
        (
            "incidents",
            "incidents.csv",
            "incident_id,source,entity_ref,created_at,resolved_at,version,caused_by_deployment_id\n\
             V1,import,svc,2026-06-13T00:00:00Z,2026-06-13T01:00:00Z,r2,\n\
             V2,import,svc,2026-06-20T00:00:00Z,2026-06-20T01:00:00Z,1.4.0,\n\
             V3,import,svc,2026-06-12T12:00:00Z,2026-06-12T13:00:00Z,9.9,\n\
             V4,import,svc,2026-06-14T00:00:00Z,2026-06-14T01:00:00Z,r3,d2\n",
        ),
    ];
    load_and_transform(dir.path(), &files)?;
    let warehouse = local_warehouse(&dir.path().join("data"))?;
    assert_eq!(
        rows(
            &warehouse,
            "SELECT deployment_id, coalesce(array_to_string(incident_ids, ','), '-') \
             FROM dora_deployments ORDER BY deployment_id",
        )
        .await?,
        table(&[&["b1", "V2"], &["d2", "V1,V4"], &["d3", "V3"]])
    );
    Ok(())
}
