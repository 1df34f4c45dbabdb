//! Identity mapping (brief §5): upstream identifiers → catalog entities,
//! through the annotations on catalog components. Loaded from the
//! warehouse's `catalog_entities` before each source runs, so a catalog
//! ingested earlier in the same run is already in effect.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, MapArray, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use fathom_warehouse::Warehouse;
use fathom_warehouse::query::{QueryLimits, query, read_only_session};

use crate::source::Identity;

/// Lookups from upstream identifiers to component refs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdentityMap {
    repositories: HashMap<String, String>,
    argo_apps: HashMap<String, String>,
    datadog_services: HashMap<String, String>,
    namespaces: HashMap<String, String>,
    sentry_projects: HashMap<String, String>,
    /// Component names, for upstreams that default to them.
    names: HashMap<String, String>,
    /// User ref → team ref (`memberOf`; the first team by ref when a user
    /// is in several), for usage by team.
    user_teams: HashMap<String, String>,
}

/// Annotation naming a component's repository.
pub const GITHUB_SLUG: &str = "github.com/project-slug";
/// Annotation naming a component's Argo CD application.
pub const ARGOCD_APP: &str = "argocd/app-name";
/// Annotation naming a component's Datadog service.
pub const DATADOG_SERVICE: &str = "datadoghq.com/service-name";
/// Annotation naming a component's Sentry project (`project` or
/// `org/project`).
pub const SENTRY_PROJECT: &str = "sentry.io/project-slug";
/// Annotation naming a component's Kubernetes namespace.
pub const KUBERNETES_NAMESPACE: &str = "backstage.io/kubernetes-namespace";

impl IdentityMap {
    /// Reads the components' annotations from the warehouse.
    pub async fn load(warehouse: &Warehouse) -> Result<Self, String> {
        let ctx = read_only_session(warehouse, QueryLimits::default())
            .await
            .map_err(|e| e.to_string())?;
        let (_, batches) = query(
            &ctx,
            "SELECT entity_ref, annotations FROM catalog_entities WHERE kind = 'component' ORDER BY entity_ref",
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut map = Self::default();
        for batch in batches {
            // Text may arrive as Utf8View depending on how the files are
            // read; cast to plain strings rather than assume.
            let refs = cast(batch.column(0), &DataType::Utf8).map_err(|e| e.to_string())?;
            let refs = refs.as_any().downcast_ref::<StringArray>();
            let annotations = batch.column(1).as_any().downcast_ref::<MapArray>();
            let (Some(refs), Some(annotations)) = (refs, annotations) else {
                return Err(format!(
                    "catalog_entities has unexpected column types ({} and {})",
                    batch.column(0).data_type(),
                    batch.column(1).data_type()
                ));
            };
            for row in 0..batch.num_rows() {
                if refs.is_null(row) || annotations.is_null(row) {
                    continue;
                }
                let entity_ref = refs.value(row).to_owned();
                if let Some((_, name)) = entity_ref.split_once('/') {
                    map.names.insert(name.to_owned(), entity_ref.clone());
                }
                let entries = annotations.value(row);
                let keys = cast(entries.column(0), &DataType::Utf8).map_err(|e| e.to_string())?;
                let values = cast(entries.column(1), &DataType::Utf8).map_err(|e| e.to_string())?;
                let keys = keys.as_string::<i32>();
                let values = values.as_string::<i32>();
                for i in 0..entries.len() {
                    if values.is_null(i) {
                        continue;
                    }
                    let value = values.value(i).trim().to_ascii_lowercase();
                    match keys.value(i) {
                        GITHUB_SLUG => {
                            map.repositories.insert(value, entity_ref.clone());
                        }
                        ARGOCD_APP => {
                            map.argo_apps.insert(value, entity_ref.clone());
                        }
                        DATADOG_SERVICE => {
                            map.datadog_services.insert(value, entity_ref.clone());
                        }
                        KUBERNETES_NAMESPACE => {
                            map.namespaces.insert(value, entity_ref.clone());
                        }
                        SENTRY_PROJECT => {
                            let project = value.rsplit('/').next().unwrap_or_default().to_owned();
                            map.sentry_projects.insert(project, entity_ref.clone());
                        }
                        _ => {}
                    }
                }
            }
        }
        let (_, batches) = query(
            &ctx,
            "SELECT source_ref, min(target_ref) FROM entity_relations \
             WHERE relation_type = 'memberOf' AND source_ref LIKE 'user:%' GROUP BY source_ref",
        )
        .await
        .map_err(|e| e.to_string())?;
        for batch in batches {
            let users = cast(batch.column(0), &DataType::Utf8).map_err(|e| e.to_string())?;
            let teams = cast(batch.column(1), &DataType::Utf8).map_err(|e| e.to_string())?;
            let (users, teams) = (users.as_string::<i32>(), teams.as_string::<i32>());
            for row in 0..batch.num_rows() {
                if !users.is_null(row) && !teams.is_null(row) {
                    map.user_teams
                        .insert(users.value(row).to_owned(), teams.value(row).to_owned());
                }
            }
        }
        Ok(map)
    }

    /// The Datadog service of every component: its annotation, else its
    /// name. Sorted.
    pub fn datadog_service_names(&self) -> Vec<String> {
        let annotated: std::collections::HashSet<&String> =
            self.datadog_services.values().collect();
        let mut services: Vec<String> = self
            .datadog_services
            .keys()
            .cloned()
            .chain(
                self.names
                    .iter()
                    .filter(|(_, entity)| !annotated.contains(entity))
                    .map(|(name, _)| name.clone()),
            )
            .collect();
        services.sort();
        services.dedup();
        services
    }

    /// Records a user's team (tests, and sources that know it).
    pub fn insert_team(&mut self, user_ref: &str, team_ref: &str) {
        self.user_teams
            .insert(user_ref.to_owned(), team_ref.to_owned());
    }

    /// The team of a user (`user:default/jdoe`), from the catalog.
    pub fn team_of(&self, user_ref: &str) -> Option<&str> {
        self.user_teams.get(user_ref).map(String::as_str)
    }

    /// Adds a mapping (tests, and sources that know one).
    pub fn insert(&mut self, identity: Identity, entity_ref: &str) {
        let (table, key) = match identity {
            Identity::Repository(slug) => (&mut self.repositories, slug),
            Identity::ArgoApp(app) => (&mut self.argo_apps, app),
            Identity::DatadogService(service) => (&mut self.datadog_services, service),
            Identity::Namespace(namespace) => (&mut self.namespaces, namespace),
            Identity::SentryProject(project) => (&mut self.sentry_projects, project),
        };
        table.insert(key.to_ascii_lowercase(), entity_ref.to_owned());
    }

    /// The entity of the first identity that maps.
    pub fn resolve(&self, identities: &[Identity]) -> Option<&str> {
        identities.iter().find_map(|identity| {
            match identity {
                Identity::Repository(slug) => self.repositories.get(&slug.to_ascii_lowercase()),
                Identity::ArgoApp(app) => self.argo_apps.get(&app.to_ascii_lowercase()),
                // The annotation, else a component of that name (Datadog's
                // default service name is the entity's).
                Identity::DatadogService(service) => {
                    let key = service.to_ascii_lowercase();
                    self.datadog_services
                        .get(&key)
                        .or_else(|| self.names.get(&key))
                }
                Identity::Namespace(namespace) => {
                    self.namespaces.get(&namespace.to_ascii_lowercase())
                }
                // The annotation, else a component of that name (Sentry's
                // usual project naming).
                Identity::SentryProject(project) => {
                    let key = project.to_ascii_lowercase();
                    self.sentry_projects
                        .get(&key)
                        .or_else(|| self.names.get(&key))
                }
            }
            .map(String::as_str)
        })
    }

    /// Number of mapped identifiers.
    pub fn len(&self) -> usize {
        self.repositories.len()
            + self.argo_apps.len()
            + self.datadog_services.len()
            + self.namespaces.len()
            + self.sentry_projects.len()
    }

    /// Whether nothing maps.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
