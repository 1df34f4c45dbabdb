//! Where the warehouse lives: parsing the configured location into a URL and
//! the object-store options that go with it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use url::Url;

use crate::{Error, Result};

/// Options handed to the object store (S3 endpoint, region, …).
///
/// Values of keys that look secret are never printed, so a `Debug` of the
/// configuration cannot leak a credential into a log.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StorageOptions(pub BTreeMap<String, String>);

impl StorageOptions {
    fn is_secret_key(key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        [
            "secret",
            "token",
            "password",
            "access_key",
            "key_id",
            "credential",
        ]
        .iter()
        .any(|needle| key.contains(needle))
    }
}

impl fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in &self.0 {
            if Self::is_secret_key(key) {
                map.entry(key, &"<redacted>");
            } else {
                map.entry(key, value);
            }
        }
        map.finish()
    }
}

/// A parsed warehouse location: the root URL all tables live under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarehouseLocation {
    root: Url,
}

impl WarehouseLocation {
    /// Parses a configured location. A plain path (relative or absolute) is a
    /// local directory; otherwise the scheme must be `file`, `s3` or `memory`.
    pub fn parse(raw: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidLocation {
            url: raw.to_owned(),
            reason,
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(invalid("it is empty; set `warehouse.url`".to_owned()));
        }
        let mut root = if trimmed.contains("://") {
            Url::parse(trimmed).map_err(|e| invalid(format!("not a URL ({e})")))?
        } else {
            local_dir_url(Path::new(trimmed)).map_err(invalid)?
        };
        match root.scheme() {
            "file" | "memory" => {}
            "s3" | "s3a" => {
                if root.host_str().is_none_or(str::is_empty) {
                    return Err(invalid(
                        "an S3 location needs a bucket: `s3://bucket/prefix`".to_owned(),
                    ));
                }
            }
            other => {
                return Err(invalid(format!(
                    "scheme `{other}` is not supported; use a path, file://, s3:// or memory://"
                )));
            }
        }
        // Table URLs are joined onto the root, which only works when the root
        // ends with a slash.
        if !root.path().ends_with('/') {
            let path = format!("{}/", root.path());
            root.set_path(&path);
        }
        Ok(Self { root })
    }

    /// The root URL, ending with `/`.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The URL of one table's directory.
    pub fn table_url(&self, table: &str) -> Result<Url> {
        self.root
            .join(&format!("{table}/"))
            .map_err(|e| Error::InvalidLocation {
                url: self.root.to_string(),
                reason: format!("cannot address table `{table}` under it: {e}"),
            })
    }

    /// Whether tables live on the local file system.
    pub fn is_local(&self) -> bool {
        self.root.scheme() == "file"
    }

    /// Whether tables live in process memory (tests).
    pub fn is_memory(&self) -> bool {
        self.root.scheme() == "memory"
    }

    /// An object store rooted at this location, for files that are not
    /// Delta tables (exports, cost reports, event files). S3 settings come
    /// from `options` (keys as for the warehouse, e.g. `AWS_ENDPOINT_URL`)
    /// and then from the standard `AWS_*` environment variables.
    pub fn object_store(
        &self,
        options: &StorageOptions,
    ) -> Result<(
        std::sync::Arc<dyn object_store::ObjectStore>,
        object_store::path::Path,
    )> {
        let invalid = |reason: String| Error::InvalidLocation {
            url: self.root.to_string(),
            reason,
        };
        if self.is_local() {
            // The local store refuses to address a directory that does not
            // exist yet.
            let dir = self
                .root
                .to_file_path()
                .map_err(|()| invalid("not a local path".to_owned()))?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| invalid(format!("cannot create `{}`: {e}", dir.display())))?;
        }
        // The environment first, so configured values win; the builder
        // ignores keys it does not know.
        let options: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .chain(options.0.iter().map(|(k, v)| (k.clone(), v.clone())))
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let (store, path) = object_store::parse_url_opts(&self.root, options)
            .map_err(|e| invalid(format!("cannot open it: {e}")))?;
        Ok((std::sync::Arc::from(store), path))
    }
}

impl fmt::Display for WarehouseLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)
    }
}

fn local_dir_url(path: &Path) -> std::result::Result<Url, String> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot resolve a relative path: {e}"))?
            .join(path)
    };
    Url::from_directory_path(&absolute)
        .map_err(|()| format!("`{}` is not a usable directory path", absolute.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_become_file_urls() -> Result<()> {
        let location = WarehouseLocation::parse("/tmp/fathom-data")?;
        assert_eq!(location.root().as_str(), "file:///tmp/fathom-data/");
        assert_eq!(
            location.table_url("deployments")?.as_str(),
            "file:///tmp/fathom-data/deployments/"
        );
        assert!(location.is_local());
        Ok(())
    }

    #[test]
    fn s3_and_memory_are_accepted() -> Result<()> {
        let s3 = WarehouseLocation::parse("s3://bucket/prefix")?;
        assert_eq!(
            s3.table_url("commits")?.as_str(),
            "s3://bucket/prefix/commits/"
        );
        assert!(WarehouseLocation::parse("memory:///")?.is_memory());
        Ok(())
    }

    #[test]
    fn bad_locations_say_what_to_fix() {
        for bad in ["", "ftp://host/x", "s3:///prefix", "http://"] {
            let error = WarehouseLocation::parse(bad).err().map(|e| e.to_string());
            assert!(error.is_some(), "accepted {bad:?}");
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let mut options = StorageOptions::default();
        options
            .0
            .insert("aws_secret_access_key".into(), "hunter2".into());
        options.0.insert("aws_region".into(), "eu-west-1".into());
        let printed = format!("{options:?}");
        assert!(!printed.contains("hunter2"));
        assert!(printed.contains("eu-west-1"));
    }
}
