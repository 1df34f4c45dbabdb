//! The world's core tables as import files (`fathom import <table>
//! <file>.parquet`), written a service at a time so a large organisation
//! (5,000 services × 2 years, tens of millions of rows) fits in a few
//! hundred MB: the fast path to a large warehouse for benchmarks and
//! trials, without serving and ingesting the upstreams.
//!
//! The rows are what ingest lands from the simulators, derived by the
//! truth's own rules (`truth.rs`): a completed deployment's change set is
//! the main-branch commits after the previous completed deployment to the
//! same environment (the first one is the baseline and names none); an
//! incident names its deployment only where the upstream carries the link.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::WorldConfig;
use crate::world::{ComponentKind, DeploySource, Org, ServiceHistory};

/// Why the core tables could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CoreExportError {
    /// A file could not be created or written.
    #[error("cannot write `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Parquet encoding failed.
    #[error("cannot encode `{path}`: {message}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// Rows buffered per table before they become a Parquet row group.
const ROW_GROUP: usize = 65_536;

/// The kinds of column the core tables need.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Bool,
    Time,
    TextList,
}

/// One value of a row.
enum Value<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Time(Option<DateTime<Utc>>),
    TextList(&'a [String]),
}

enum Column {
    Text(StringBuilder),
    Int(Int64Builder),
    Bool(BooleanBuilder),
    Time(TimestampMicrosecondBuilder),
    TextList(ListBuilder<StringBuilder>),
}

impl Column {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Text => Self::Text(StringBuilder::new()),
            Kind::Int => Self::Int(Int64Builder::new()),
            Kind::Bool => Self::Bool(BooleanBuilder::new()),
            Kind::Time => Self::Time(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
            Kind::TextList => Self::TextList(ListBuilder::new(StringBuilder::new())),
        }
    }

    fn push(&mut self, value: &Value<'_>) {
        // A mismatched value is a bug in this module's row layouts; it is
        // written as null rather than taking the export down.
        match (self, value) {
            (Self::Text(b), Value::Text(v)) => b.append_option(*v),
            (Self::Int(b), Value::Int(v)) => b.append_option(*v),
            (Self::Bool(b), Value::Bool(v)) => b.append_option(*v),
            (Self::Time(b), Value::Time(v)) => b.append_option(v.map(|t| t.timestamp_micros())),
            (Self::TextList(b), Value::TextList(v)) => {
                for text in *v {
                    b.values().append_value(text);
                }
                b.append(true);
            }
            (Self::Text(b), _) => b.append_null(),
            (Self::Int(b), _) => b.append_null(),
            (Self::Bool(b), _) => b.append_null(),
            (Self::Time(b), _) => b.append_null(),
            (Self::TextList(b), _) => b.append(false),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Text(b) => Arc::new(b.finish()),
            Self::Int(b) => Arc::new(b.finish()),
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Time(b) => Arc::new(b.finish()),
            Self::TextList(b) => Arc::new(b.finish()),
        }
    }
}

/// One table's file: rows buffered, flushed as row groups.
struct TableFile {
    path: PathBuf,
    schema: SchemaRef,
    columns: Vec<Column>,
    buffered: usize,
    rows: u64,
    writer: ArrowWriter<File>,
}

impl TableFile {
    fn create(dir: &Path, table: &str, layout: &[(&str, Kind)]) -> Result<Self, CoreExportError> {
        let path = dir.join(format!("{table}.parquet"));
        let schema = Arc::new(Schema::new(
            layout
                .iter()
                .map(|(name, kind)| {
                    let data_type = match kind {
                        Kind::Text => DataType::Utf8,
                        Kind::Int => DataType::Int64,
                        Kind::Bool => DataType::Boolean,
                        Kind::Time => {
                            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
                        }
                        Kind::TextList => {
                            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
                        }
                    };
                    Field::new(*name, data_type, true)
                })
                .collect::<Vec<_>>(),
        ));
        let file = File::create(&path).map_err(|source| CoreExportError::Io {
            path: path.clone(),
            source,
        })?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(properties)).map_err(|e| {
            CoreExportError::Encode {
                path: path.clone(),
                message: e.to_string(),
            }
        })?;
        Ok(Self {
            path,
            schema,
            columns: layout.iter().map(|(_, kind)| Column::new(*kind)).collect(),
            buffered: 0,
            rows: 0,
            writer,
        })
    }

    fn row(&mut self, values: &[Value<'_>]) -> Result<(), CoreExportError> {
        if values.len() != self.columns.len() {
            return Err(CoreExportError::Encode {
                path: self.path.clone(),
                message: format!(
                    "a row of {} values for {} columns",
                    values.len(),
                    self.columns.len()
                ),
            });
        }
        for (column, value) in self.columns.iter_mut().zip(values) {
            column.push(value);
        }
        self.buffered += 1;
        self.rows += 1;
        if self.buffered >= ROW_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), CoreExportError> {
        if self.buffered == 0 {
            return Ok(());
        }
        let arrays = self.columns.iter_mut().map(Column::finish).collect();
        let encode = |e: &dyn std::fmt::Display| CoreExportError::Encode {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| encode(&e))?;
        self.writer.write(&batch).map_err(|e| encode(&e))?;
        self.writer.flush().map_err(|e| encode(&e))?;
        self.buffered = 0;
        Ok(())
    }

    fn close(mut self) -> Result<(PathBuf, u64), CoreExportError> {
        self.flush()?;
        let path = self.path.clone();
        self.writer.close().map_err(|e| CoreExportError::Encode {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok((path, self.rows))
    }
}

const CATALOG: &[(&str, Kind)] = &[
    ("entity_ref", Kind::Text),
    ("kind", Kind::Text),
    ("namespace", Kind::Text),
    ("name", Kind::Text),
    ("entity_type", Kind::Text),
    ("lifecycle", Kind::Text),
    ("owner_ref", Kind::Text),
    ("system_ref", Kind::Text),
    ("domain_ref", Kind::Text),
    ("parent_ref", Kind::Text),
    ("source", Kind::Text),
];
const DEPLOYMENTS: &[(&str, Kind)] = &[
    ("deployment_id", Kind::Text),
    ("source", Kind::Text),
    ("entity_ref", Kind::Text),
    ("environment", Kind::Text),
    ("status", Kind::Text),
    ("revision", Kind::Text),
    ("repository_id", Kind::Text),
    ("started_at", Kind::Time),
    ("finished_at", Kind::Time),
    ("is_rollback", Kind::Bool),
];
const DEPLOYMENT_CHANGES: &[(&str, Kind)] = &[
    ("deployment_id", Kind::Text),
    ("sha", Kind::Text),
    ("repository_id", Kind::Text),
    ("pull_request_number", Kind::Int),
];
const COMMITS: &[(&str, Kind)] = &[
    ("repository_id", Kind::Text),
    ("sha", Kind::Text),
    ("author_login", Kind::Text),
    ("authored_at", Kind::Time),
    ("committed_at", Kind::Time),
    ("message", Kind::Text),
    ("pull_request_number", Kind::Int),
    ("pushed_directly", Kind::Bool),
    ("entity_ref", Kind::Text),
];
const PULL_REQUESTS: &[(&str, Kind)] = &[
    ("repository_id", Kind::Text),
    ("number", Kind::Int),
    ("title", Kind::Text),
    ("author_login", Kind::Text),
    ("state", Kind::Text),
    ("created_at", Kind::Time),
    ("first_commit_at", Kind::Time),
    ("first_review_at", Kind::Time),
    ("merged_at", Kind::Time),
    ("closed_at", Kind::Time),
    ("merge_commit_sha", Kind::Text),
    ("commit_count", Kind::Int),
    ("additions", Kind::Int),
    ("deletions", Kind::Int),
    ("changed_files", Kind::Int),
    ("labels", Kind::TextList),
    ("entity_ref", Kind::Text),
];
const PULL_REQUEST_COMMITS: &[(&str, Kind)] = &[
    ("repository_id", Kind::Text),
    ("pull_request_number", Kind::Int),
    ("sha", Kind::Text),
    ("entity_ref", Kind::Text),
];
const INCIDENTS: &[(&str, Kind)] = &[
    ("incident_id", Kind::Text),
    ("source", Kind::Text),
    ("title", Kind::Text),
    ("severity", Kind::Text),
    ("entity_ref", Kind::Text),
    ("created_at", Kind::Time),
    ("detected_at", Kind::Time),
    ("resolved_at", Kind::Time),
    ("customer_impacted", Kind::Bool),
    ("caused_by_deployment_id", Kind::Text),
];

/// The tables written, in the order to import them (the catalog first,
/// so rows are attributed as they land).
pub const CORE_TABLES: [&str; 7] = [
    "catalog_entities",
    "deployments",
    "deployment_changes",
    "commits",
    "pull_requests",
    "pull_request_commits",
    "incidents",
];

/// What [`write_core_tables`] wrote: per part (the history before the
/// first cut, then between cuts), each table's file and row count, in
/// [`CORE_TABLES`] order.
#[derive(Debug, Clone, Default)]
pub struct CoreExport {
    /// Per part: (table, file, rows).
    pub parts: Vec<Vec<(&'static str, PathBuf, u64)>>,
}

/// One table's files, one per part.
struct Sink {
    parts: Vec<TableFile>,
}

impl Sink {
    fn create(
        dirs: &[PathBuf],
        table: &str,
        layout: &[(&str, Kind)],
    ) -> Result<Self, CoreExportError> {
        Ok(Self {
            parts: dirs
                .iter()
                .map(|dir| TableFile::create(dir, table, layout))
                .collect::<Result<_, _>>()?,
        })
    }

    /// A row of part `part` (the last one when past the end).
    fn row(&mut self, part: usize, values: &[Value<'_>]) -> Result<(), CoreExportError> {
        let last = self.parts.len().saturating_sub(1);
        match self.parts.get_mut(part.min(last)) {
            Some(file) => file.row(values),
            None => Ok(()),
        }
    }
}

struct Files {
    /// Instants where a new part starts, ascending.
    cuts: Vec<DateTime<Utc>>,
    catalog: Sink,
    deployments: Sink,
    changes: Sink,
    commits: Sink,
    pull_requests: Sink,
    pr_commits: Sink,
    incidents: Sink,
}

impl Files {
    /// The part an event at `at` belongs to.
    fn part(&self, at: DateTime<Utc>) -> usize {
        self.cuts.partition_point(|cut| *cut <= at)
    }
}

/// Writes the core tables of the world of `config` as `<table>.parquet`
/// files, generating one service at a time: everything before the first
/// of `cuts` into `dir/part-0`, then each period between cuts into the
/// next part (a row belongs where its event happened: a deployment's or
/// incident's start, a commit reaching main, a pull request's merge; a
/// change set goes with its deployment, the catalog with the first part).
/// Without cuts, one part. `progress` is told after each service (done,
/// total).
pub fn write_core_tables(
    config: &WorldConfig,
    dir: &Path,
    cuts: &[DateTime<Utc>],
    mut progress: impl FnMut(usize, usize),
) -> Result<CoreExport, CoreExportError> {
    let dirs: Vec<PathBuf> = (0..=cuts.len())
        .map(|part| dir.join(format!("part-{part}")))
        .collect();
    for dir in &dirs {
        std::fs::create_dir_all(dir).map_err(|source| CoreExportError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    let org = Org::generate(config);
    let mut cuts = cuts.to_vec();
    cuts.sort();
    let mut files = Files {
        cuts,
        catalog: Sink::create(&dirs, "catalog_entities", CATALOG)?,
        deployments: Sink::create(&dirs, "deployments", DEPLOYMENTS)?,
        changes: Sink::create(&dirs, "deployment_changes", DEPLOYMENT_CHANGES)?,
        commits: Sink::create(&dirs, "commits", COMMITS)?,
        pull_requests: Sink::create(&dirs, "pull_requests", PULL_REQUESTS)?,
        pr_commits: Sink::create(&dirs, "pull_request_commits", PULL_REQUEST_COMMITS)?,
        incidents: Sink::create(&dirs, "incidents", INCIDENTS)?,
    };
    catalog(&org, &mut files.catalog)?;
    let total = org.components.len();
    for idx in 0..total {
        let history = ServiceHistory::generate(config, &org, idx);
        service(&org, &history, &mut files)?;
        progress(idx + 1, total);
    }
    let mut out = CoreExport {
        parts: vec![Vec::new(); dirs.len()],
    };
    for (table, sink) in CORE_TABLES.into_iter().zip([
        files.catalog,
        files.deployments,
        files.changes,
        files.commits,
        files.pull_requests,
        files.pr_commits,
        files.incidents,
    ]) {
        for (part, file) in sink.parts.into_iter().enumerate() {
            let (path, rows) = file.close()?;
            if let Some(listed) = out.parts.get_mut(part) {
                listed.push((table, path, rows));
            }
        }
    }
    Ok(out)
}

fn catalog(org: &Org, out: &mut Sink) -> Result<(), CoreExportError> {
    let group = |name: &str| format!("group:default/{name}");
    for department in &org.departments {
        out.row(
            0,
            &[
                Value::Text(Some(&group(&department.name))),
                Value::Text(Some("group")),
                Value::Text(Some("default")),
                Value::Text(Some(&department.name)),
                Value::Text(Some("department")),
                Value::Text(None),
                Value::Text(None),
                Value::Text(None),
                Value::Text(None),
                Value::Text(None),
                Value::Text(Some("sim")),
            ],
        )?;
    }
    for team in &org.teams {
        let parent = org.departments.get(team.department).map(|d| group(&d.name));
        out.row(
            0,
            &[
                Value::Text(Some(&group(&team.name))),
                Value::Text(Some("group")),
                Value::Text(Some("default")),
                Value::Text(Some(&team.name)),
                Value::Text(Some("team")),
                Value::Text(None),
                Value::Text(None),
                Value::Text(None),
                Value::Text(None),
                Value::Text(parent.as_deref()),
                Value::Text(Some("sim")),
            ],
        )?;
    }
    for (domain, systems) in &org.domains {
        let domain_ref = format!("domain:default/{domain}");
        out.row(
            0,
            &[
                Value::Text(Some(&domain_ref)),
                Value::Text(Some("domain")),
                Value::Text(Some("default")),
                Value::Text(Some(domain)),
                Value::Text(None),
                Value::Text(None),
                Value::Text(None),
                Value::Text(None),
                Value::Text(None),
                Value::Text(None),
                Value::Text(Some("sim")),
            ],
        )?;
        for system in systems {
            out.row(
                0,
                &[
                    Value::Text(Some(&format!("system:default/{system}"))),
                    Value::Text(Some("system")),
                    Value::Text(Some("default")),
                    Value::Text(Some(system)),
                    Value::Text(None),
                    Value::Text(None),
                    Value::Text(None),
                    Value::Text(None),
                    Value::Text(Some(&domain_ref)),
                    Value::Text(None),
                    Value::Text(Some("sim")),
                ],
            )?;
        }
    }
    for (idx, component) in org.components.iter().enumerate() {
        let kind = match component.kind {
            ComponentKind::Service => "service",
            ComponentKind::Website => "website",
            ComponentKind::Library => "library",
        };
        out.row(
            0,
            &[
                Value::Text(Some(&org.component_ref(idx))),
                Value::Text(Some("component")),
                Value::Text(Some("default")),
                Value::Text(Some(&component.name)),
                Value::Text(Some(kind)),
                Value::Text(Some("production")),
                Value::Text(Some(&org.team_ref(component.team))),
                Value::Text(Some(&format!("system:default/{}", component.system))),
                Value::Text(None),
                Value::Text(None),
                Value::Text(Some("sim")),
            ],
        )?;
    }
    Ok(())
}

fn service(org: &Org, history: &ServiceHistory, files: &mut Files) -> Result<(), CoreExportError> {
    let entity = org.component_ref(history.component);
    let repository = org
        .components
        .get(history.component)
        .map_or("", |c| c.repo.as_str());
    for commit in &history.commits {
        let part = files.part(commit.committed_at);
        files.commits.row(
            part,
            &[
                Value::Text(Some(repository)),
                Value::Text(Some(&commit.sha)),
                Value::Text(Some(&commit.author_login)),
                Value::Time(Some(commit.authored_at)),
                Value::Time(Some(commit.committed_at)),
                Value::Text(Some(&commit.message)),
                Value::Int(commit.pull_request.and_then(|n| i64::try_from(n).ok())),
                Value::Bool(Some(commit.pull_request.is_none())),
                Value::Text(Some(&entity)),
            ],
        )?;
    }
    for pr in &history.pull_requests {
        let number = i64::try_from(pr.number).ok();
        let part = files.part(pr.merged_at);
        files.pull_requests.row(
            part,
            &[
                Value::Text(Some(repository)),
                Value::Int(number),
                Value::Text(Some(&pr.title)),
                Value::Text(Some(&pr.author_login)),
                Value::Text(Some("merged")),
                Value::Time(Some(pr.created_at)),
                Value::Time(Some(pr.first_commit_at)),
                Value::Time(Some(pr.first_review_at)),
                Value::Time(Some(pr.merged_at)),
                Value::Time(Some(pr.merged_at)),
                Value::Text(Some(&pr.merge_commit_sha)),
                Value::Int(i64::try_from(pr.commit_shas.len()).ok()),
                Value::Int(Some(i64::from(pr.additions))),
                Value::Int(Some(i64::from(pr.deletions))),
                Value::Int(Some(i64::from(pr.changed_files))),
                Value::TextList(&pr.labels),
                Value::Text(Some(&entity)),
            ],
        )?;
        for sha in &pr.commit_shas {
            files.pr_commits.row(
                part,
                &[
                    Value::Text(Some(repository)),
                    Value::Int(number),
                    Value::Text(Some(sha)),
                    Value::Text(Some(&entity)),
                ],
            )?;
        }
    }
    // Change sets: per environment, the commits after the previous
    // completed deployment's revision up to this one's.
    let mut order: Vec<usize> = (0..history.deployments.len()).collect();
    order.sort_by(|a, b| {
        let (a, b) = (&history.deployments[*a], &history.deployments[*b]);
        a.finished_at.cmp(&b.finished_at).then(a.id.cmp(&b.id))
    });
    let mut previous: BTreeMap<&str, u32> = BTreeMap::new();
    for d in order.into_iter().map(|i| &history.deployments[i]) {
        let source = match d.source {
            DeploySource::ArgoCd => "argocd",
            DeploySource::GithubDeployments => "github",
        };
        let part = files.part(d.started_at);
        files.deployments.row(
            part,
            &[
                Value::Text(Some(&d.id)),
                Value::Text(Some(source)),
                Value::Text(Some(&entity)),
                Value::Text(Some(&d.environment)),
                Value::Text(Some(if d.job_succeeded {
                    "success"
                } else {
                    "failure"
                })),
                Value::Text(Some(&d.revision)),
                Value::Text(Some(repository)),
                Value::Time(Some(d.started_at)),
                Value::Time(Some(d.finished_at)),
                Value::Bool(Some(d.is_rollback)),
            ],
        )?;
        if !d.job_succeeded {
            continue;
        }
        if let Some(after) = previous.insert(d.environment.as_str(), d.revision_seq) {
            // Main is ordered by `seq`; a rollback's range is empty.
            let from = history.commits.partition_point(|c| c.seq <= after);
            let to = history.commits.partition_point(|c| c.seq <= d.revision_seq);
            for commit in history.commits.get(from..to).unwrap_or_default() {
                files.changes.row(
                    part,
                    &[
                        Value::Text(Some(&d.id)),
                        Value::Text(Some(&commit.sha)),
                        Value::Text(Some(repository)),
                        Value::Int(None),
                    ],
                )?;
            }
        }
    }
    for incident in &history.incidents {
        let link = incident
            .explicit_link
            .then_some(incident.caused_by_deployment.as_deref())
            .flatten();
        let part = files.part(incident.created_at);
        files.incidents.row(
            part,
            &[
                Value::Text(Some(&incident.id)),
                Value::Text(Some("datadog")),
                Value::Text(Some(&incident.title)),
                Value::Text(Some(&incident.severity)),
                Value::Text(Some(&entity)),
                Value::Time(Some(incident.created_at)),
                Value::Time(Some(incident.detected_at)),
                Value::Time(Some(incident.resolved_at)),
                Value::Bool(Some(incident.customer_impacted)),
                Value::Text(link),
            ],
        )?;
    }
    Ok(())
}
