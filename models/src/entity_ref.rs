//! Backstage entity references (`kind:namespace/name`).
//!
//! Backstage lets a reference omit its kind (when the context implies one, as
//! `spec.owner` implies `group`) and its namespace (`default`). Comparisons in
//! Backstage are case-insensitive, so the canonical form we store and print is
//! always complete and lower-cased: `Component:payments-api` in the input
//! becomes `component:default/payments-api`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The namespace Backstage assumes when a reference names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Longest name or namespace Backstage accepts.
const MAX_PART_LEN: usize = 63;

/// Why a string is not a valid entity reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntityRefError {
    /// The input was empty or only whitespace.
    #[error("entity ref is empty; expected `kind:namespace/name`")]
    Empty,
    /// No kind in the input and none implied by the context.
    #[error(
        "entity ref `{input}` has no kind; write it as `kind:namespace/name`, e.g. `component:default/{input}`"
    )]
    MissingKind {
        /// The offending input.
        input: String,
    },
    /// One part breaks Backstage's naming rules.
    #[error("entity ref `{input}`: {part} `{value}` is invalid: {rule}")]
    InvalidPart {
        /// The offending input.
        input: String,
        /// Which part: kind, namespace or name.
        part: &'static str,
        /// The part's value.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
}

/// A parsed, validated and canonical (lower-cased, complete) entity reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityRef {
    kind: String,
    namespace: String,
    name: String,
}

impl EntityRef {
    /// Parses a complete reference; the namespace may be omitted (`default`),
    /// the kind may not.
    pub fn parse(input: &str) -> Result<Self, EntityRefError> {
        Self::parse_with_defaults(input, None, DEFAULT_NAMESPACE)
    }

    /// Parses a reference whose kind and namespace may be implied by the
    /// context, as Backstage does for `spec.owner` (kind `group`) or
    /// `spec.system` (kind `system`).
    pub fn parse_with_defaults(
        input: &str,
        default_kind: Option<&str>,
        default_namespace: &str,
    ) -> Result<Self, EntityRefError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(EntityRefError::Empty);
        }
        let (kind, rest) = match trimmed.split_once(':') {
            Some((kind, rest)) => (Some(kind), rest),
            None => (None, trimmed),
        };
        let (namespace, name) = match rest.split_once('/') {
            Some((namespace, name)) => (namespace, name),
            None => (default_namespace, rest),
        };
        let kind = match kind.or(default_kind) {
            Some(kind) => kind,
            None => {
                return Err(EntityRefError::MissingKind {
                    input: trimmed.to_owned(),
                });
            }
        };
        let invalid =
            |part: &'static str, value: &str, rule: &'static str| EntityRefError::InvalidPart {
                input: trimmed.to_owned(),
                part,
                value: value.to_owned(),
                rule,
            };
        if !valid_kind(kind) {
            return Err(invalid(
                "kind",
                kind,
                "must start with a letter and contain only letters and digits",
            ));
        }
        for (part, value) in [("namespace", namespace), ("name", name)] {
            if value.is_empty() || value.len() > MAX_PART_LEN {
                return Err(invalid(part, value, "must be 1 to 63 characters long"));
            }
            if !valid_name(value) {
                return Err(invalid(
                    part,
                    value,
                    "must be letters and digits separated by single `-`, `_` or `.`",
                ));
            }
        }
        Ok(Self {
            kind: kind.to_ascii_lowercase(),
            namespace: namespace.to_ascii_lowercase(),
            name: name.to_ascii_lowercase(),
        })
    }

    /// The kind, lower-cased (`component`, `group`, …).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The namespace, lower-cased.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The name, lower-cased.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn valid_kind(kind: &str) -> bool {
    let mut chars = kind.chars();
    matches!(chars.next(), Some(first) if first.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric())
}

/// Backstage's rule for names and namespaces: alphanumeric runs joined by
/// single separators, no separator at either end.
fn valid_name(value: &str) -> bool {
    let mut previous_was_separator = true;
    for c in value.chars() {
        if c.is_ascii_alphanumeric() {
            previous_was_separator = false;
        } else if matches!(c, '-' | '_' | '.') && !previous_was_separator {
            previous_was_separator = true;
        } else {
            return false;
        }
    }
    !previous_was_separator
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.kind, self.namespace, self.name)
    }
}

impl FromStr for EntityRef {
    type Err = EntityRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for EntityRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EntityRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn complete_refs_are_lower_cased() -> Result<(), EntityRefError> {
        let parsed = EntityRef::parse("Component:Default/Payments-API")?;
        assert_eq!(parsed.to_string(), "component:default/payments-api");
        assert_eq!(parsed.kind(), "component");
        assert_eq!(parsed.namespace(), "default");
        assert_eq!(parsed.name(), "payments-api");
        Ok(())
    }

    #[test]
    fn namespace_defaults_to_default() -> Result<(), EntityRefError> {
        assert_eq!(
            EntityRef::parse("group:team-a")?.to_string(),
            "group:default/team-a"
        );
        Ok(())
    }

    #[test]
    fn kind_comes_from_context_when_omitted() -> Result<(), EntityRefError> {
        let owner = EntityRef::parse_with_defaults("team-a", Some("group"), "default")?;
        assert_eq!(owner.to_string(), "group:default/team-a");
        let namespaced = EntityRef::parse_with_defaults("ops/sre", Some("group"), "default")?;
        assert_eq!(namespaced.to_string(), "group:ops/sre");
        // An explicit kind wins over the context's.
        let user = EntityRef::parse_with_defaults("user:jdoe", Some("group"), "default")?;
        assert_eq!(user.to_string(), "user:default/jdoe");
        Ok(())
    }

    #[test]
    fn missing_kind_without_context_is_an_error() {
        assert!(matches!(
            EntityRef::parse("team-a"),
            Err(EntityRefError::MissingKind { .. })
        ));
    }

    #[test]
    fn invalid_parts_are_rejected_with_the_rule() {
        for bad in [
            "",
            "  ",
            "component:default/",
            "component:/x",
            "component:default/-x",
            "component:default/a--b",
            "component:default/a b",
            "1kind:default/x",
            "comp-onent:default/x",
        ] {
            assert!(EntityRef::parse(bad).is_err(), "accepted {bad:?}");
        }
        let long = format!("component:default/{}", "a".repeat(64));
        assert!(EntityRef::parse(&long).is_err());
    }

    #[test]
    fn serde_uses_the_canonical_string() -> Result<(), serde_json::Error> {
        let parsed: EntityRef = serde_json::from_str("\"System:checkout\"")?;
        assert_eq!(
            serde_json::to_string(&parsed)?,
            "\"system:default/checkout\""
        );
        assert!(serde_json::from_str::<EntityRef>("\"checkout\"").is_err());
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Printing a parsed ref and parsing it again is the identity, and the
        /// printed form is always complete and lower-case.
        #[test]
        fn canonical_form_round_trips(
            kind in "[a-zA-Z][a-zA-Z0-9]{0,10}",
            namespace in proptest::option::of("[a-zA-Z0-9]{1,5}([-_.][a-zA-Z0-9]{1,5}){0,3}"),
            name in "[a-zA-Z0-9]{1,8}([-_.][a-zA-Z0-9]{1,8}){0,4}",
        ) {
            let input = match &namespace {
                Some(ns) => format!("{kind}:{ns}/{name}"),
                None => format!("{kind}:{name}"),
            };
            let parsed = EntityRef::parse(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let printed = parsed.to_string();
            prop_assert_eq!(printed.clone(), printed.to_ascii_lowercase());
            prop_assert_eq!(printed.matches(':').count(), 1);
            prop_assert_eq!(printed.matches('/').count(), 1);
            let reparsed = EntityRef::parse(&printed).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(reparsed, parsed);
        }
    }
}
