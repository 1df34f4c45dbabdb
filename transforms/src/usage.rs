//! The usage marts' parameters (`[usage]` in `fathom.toml`): the privacy
//! threshold, what a session and a search's click are, and the minutes a
//! template run saves.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// `[usage]` in `fathom.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageParameters {
    /// Every published number about people counts at least this many
    /// distinct users, or is suppressed (null, flagged). Default 5; at
    /// least 2.
    pub k_anonymity: u32,
    /// A user's events belong to one session while no two are further
    /// apart than this, minutes. Default 30.
    pub session_gap_minutes: u32,
    /// A search succeeded when the same user clicks one of its results
    /// (`discover`) within this many minutes and before searching again;
    /// at most the session gap, so the click is in the search's session.
    /// Default 10.
    pub click_window_minutes: u32,
    /// Minutes a template run saves when neither `[usage.templates]` nor
    /// the event (Backstage sends the template's `backstage.io/time-saved`
    /// as the `create` event's value) says. Default 0: no estimate
    /// without a source.
    pub default_template_minutes: f64,
    /// Minutes saved per run, by template ref
    /// (`"template:default/new-service" = 240`); wins over the event's.
    pub templates: BTreeMap<String, f64>,
    /// Portal events older than this many days are deleted by
    /// `fathom warehouse retain`; 0 keeps them forever. Not a definition:
    /// the marts are recomputed from what remains. Default 395.
    pub retention_days: u32,
}

impl Default for UsageParameters {
    fn default() -> Self {
        Self {
            k_anonymity: 5,
            session_gap_minutes: 30,
            click_window_minutes: 10,
            default_template_minutes: 0.0,
            templates: BTreeMap::new(),
            retention_days: 395,
        }
    }
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl UsageParameters {
    /// `sql` with the usage placeholders filled in, after checking the
    /// parameters.
    pub(crate) fn fill(&self, sql: String) -> Result<String> {
        if self.k_anonymity < 2 {
            return Err(Error::Parameter {
                name: "usage.k_anonymity",
                message: format!(
                    "{} would publish single users' numbers; use 2 or more",
                    self.k_anonymity
                ),
            });
        }
        if self.click_window_minutes == 0 || self.click_window_minutes > self.session_gap_minutes {
            return Err(Error::Parameter {
                name: "usage.click_window_minutes",
                message: format!(
                    "{} must be between 1 and session_gap_minutes ({})",
                    self.click_window_minutes, self.session_gap_minutes
                ),
            });
        }
        for (name, minutes) in std::iter::once(("default", &self.default_template_minutes))
            .chain(self.templates.iter().map(|(k, v)| (k.as_str(), v)))
        {
            if !minutes.is_finite() || *minutes < 0.0 {
                return Err(Error::Parameter {
                    name: "usage.templates",
                    message: format!("{name}: {minutes} is not a number of minutes ≥ 0"),
                });
            }
        }
        // `(template_ref, minutes)` rows; one that matches nothing keeps
        // the VALUES list valid when no template is configured.
        let templates = self
            .templates
            .iter()
            .map(|(template, minutes)| {
                format!(
                    "({}, CAST({minutes:?} AS DOUBLE))",
                    quoted(&template.to_ascii_lowercase())
                )
            })
            .chain(std::iter::once(
                "(CAST(NULL AS VARCHAR), CAST(NULL AS DOUBLE))".to_owned(),
            ))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(sql
            .replace("{{k_anonymity}}", &self.k_anonymity.to_string())
            .replace(
                "{{session_gap_seconds}}",
                &(u64::from(self.session_gap_minutes) * 60).to_string(),
            )
            .replace(
                "{{click_window_seconds}}",
                &(u64::from(self.click_window_minutes) * 60).to_string(),
            )
            .replace(
                "{{default_template_minutes}}",
                &format!("{:?}", self.default_template_minutes),
            )
            .replace("{{template_minutes}}", &templates))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_parameters_fill_and_refuse_what_breaks_privacy() -> Result<()> {
        let mut parameters = UsageParameters::default();
        parameters
            .templates
            .insert("template:default/It's".to_owned(), 45.0);
        assert_eq!(
            parameters
                .fill("{{k_anonymity}} {{click_window_seconds}} {{template_minutes}}".into())?,
            "5 600 ('template:default/it''s', CAST(45.0 AS DOUBLE)), (CAST(NULL AS VARCHAR), CAST(NULL AS DOUBLE))"
        );
        let one = UsageParameters {
            k_anonymity: 1,
            ..UsageParameters::default()
        };
        assert!(one.fill(String::new()).is_err());
        let wide = UsageParameters {
            click_window_minutes: 45,
            ..UsageParameters::default()
        };
        let error = wide.fill(String::new()).err().map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .unwrap_or_default()
                .contains("click_window_minutes"),
            "{error:?}"
        );
        Ok(())
    }
}
