//! Decoding pull requests with their commits and reviews (the coding, pickup
//! and review stages).

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use fathom_models::tables::{PULL_REQUEST_COMMITS, PULL_REQUEST_REVIEWS, PULL_REQUESTS};
use serde_json::{Map, Value, json};

use super::decode::{each, repo_of, request_path};
use super::fetch::time_at;
use crate::source::{
    Decoded, Identity, Payload, json_kind, opt_str, req_i64, req_str, require_keys,
};

/// What a `/pulls…` request was for.
pub(super) enum PullPart {
    List,
    One,
    Commits(i64),
    Reviews(i64),
}

pub(super) fn pull_part(payload: &Payload) -> Option<PullPart> {
    let path = request_path(payload);
    let after = path.split("/pulls").nth(1)?;
    let parts: Vec<&str> = after
        .trim_start_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    match parts.as_slice() {
        [] => Some(PullPart::List),
        [n] if n.parse::<i64>().is_ok() => Some(PullPart::One),
        [n, "commits"] => n.parse().ok().map(PullPart::Commits),
        [n, "reviews"] => n.parse().ok().map(PullPart::Reviews),
        _ => None,
    }
}

/// Who reviewed, and when.
pub(super) type Reviewed = (String, DateTime<Utc>);

pub(super) fn decode_pulls(bodies: &[(&Payload, Value)], decoded: &mut Decoded) {
    // Commits and reviews first: a pull request's coding and pickup stages
    // need its first commit and its first review by someone else.
    let mut first_commit: HashMap<(String, i64), DateTime<Utc>> = HashMap::new();
    let mut reviews: HashMap<(String, i64), Vec<Reviewed>> = HashMap::new();
    // A pull request with a malformed commit or review would get wrong
    // stages: it is left out (its bad parts are quarantined) rather than
    // stored wrong.
    let mut incomplete: BTreeSet<(String, i64)> = BTreeSet::new();
    for (payload, body) in bodies {
        let Some(repo) = repo_of(payload) else {
            continue;
        };
        match pull_part(payload) {
            Some(PullPart::Commits(number)) => {
                for (position, commit) in each(payload, body, decoded) {
                    let result = (|| -> Result<Map<String, Value>, String> {
                        require_keys(commit, &["sha", "commit", "author"])?;
                        let mut values = Map::new();
                        values.insert("repository_id".into(), json!(format!("github:{repo}")));
                        values.insert("pull_request_number".into(), json!(number));
                        values.insert("sha".into(), json!(req_str(commit, "/sha")?));
                        values.insert(
                            "author_login".into(),
                            json!(opt_str(commit, "/author/login")?),
                        );
                        values.insert(
                            "authored_at".into(),
                            json!(opt_str(commit, "/commit/author/date")?),
                        );
                        Ok(values)
                    })();
                    match result {
                        Ok(values) => {
                            if let Some(at) = time_at(commit, "/commit/author/date") {
                                let entry =
                                    first_commit.entry((repo.clone(), number)).or_insert(at);
                                *entry = (*entry).min(at);
                            }
                            decoded.row(
                                &PULL_REQUEST_COMMITS,
                                values,
                                vec![Identity::Repository(repo.clone())],
                            );
                        }
                        Err(reason) => {
                            incomplete.insert((repo.clone(), number));
                            decoded.reject(payload, Some(position), reason, commit);
                        }
                    }
                }
            }
            Some(PullPart::Reviews(number)) => {
                for (position, review) in each(payload, body, decoded) {
                    let result = (|| -> Result<(Map<String, Value>, Option<Reviewed>), String> {
                        require_keys(review, &["id", "user", "state"])?;
                        let id = req_i64(review, "/id")?;
                        let state = opt_str(review, "/state")?;
                        // A pending review is a draft nobody has seen.
                        let submitted = opt_str(review, "/submitted_at")?;
                        let login = opt_str(review, "/user/login")?;
                        let mut values = Map::new();
                        values.insert("repository_id".into(), json!(format!("github:{repo}")));
                        values.insert("pull_request_number".into(), json!(number));
                        values.insert("review_id".into(), json!(id.to_string()));
                        values.insert("reviewer_login".into(), json!(login));
                        values.insert("state".into(), json!(state));
                        values.insert("submitted_at".into(), json!(submitted));
                        let seen = match (
                            login,
                            submitted.and_then(|_| time_at(review, "/submitted_at")),
                        ) {
                            (Some(login), Some(at)) if state != Some("PENDING") => {
                                Some((login.to_owned(), at))
                            }
                            _ => None,
                        };
                        Ok((values, seen))
                    })();
                    match result {
                        Ok((values, seen)) => {
                            if let Some(seen) = seen {
                                reviews
                                    .entry((repo.clone(), number))
                                    .or_default()
                                    .push(seen);
                            }
                            if values.get("submitted_at").is_some_and(|v| !v.is_null()) {
                                decoded.row(
                                    &PULL_REQUEST_REVIEWS,
                                    values,
                                    vec![Identity::Repository(repo.clone())],
                                );
                            }
                        }
                        Err(reason) => {
                            incomplete.insert((repo.clone(), number));
                            decoded.reject(payload, Some(position), reason, review);
                        }
                    }
                }
            }
            // The list decides which pull requests are read in full: a
            // record it cannot use is quarantined, not skipped.
            Some(PullPart::List) => {
                for (position, pull) in each(payload, body, decoded) {
                    let check = require_keys(pull, &["number", "updated_at"])
                        .and_then(|()| req_i64(pull, "/number").map(|_| ()))
                        .and_then(|()| req_str(pull, "/updated_at").map(|_| ()));
                    if let Err(reason) = check {
                        decoded.reject(payload, Some(position), reason, pull);
                    }
                }
            }
            _ => {}
        }
    }
    for (payload, body) in bodies {
        let Some(repo) = repo_of(payload) else {
            continue;
        };
        let Some(PullPart::One) = pull_part(payload) else {
            continue;
        };
        if body
            .get("number")
            .and_then(Value::as_i64)
            .is_some_and(|n| incomplete.contains(&(repo.clone(), n)))
        {
            continue;
        }
        let result = (|| -> Result<Map<String, Value>, String> {
            let number = req_i64(body, "/number")?;
            let author = opt_str(body, "/user/login")?;
            let merged_at = opt_str(body, "/merged_at")?;
            let state = match (merged_at, req_str(body, "/state")?) {
                (Some(_), _) => "merged",
                (None, state) => state,
            };
            let labels: Vec<String> = match body.get("labels") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(labels)) => labels
                    .iter()
                    .filter_map(|l| l.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect(),
                Some(other) => {
                    return Err(format!(
                        "`labels` should be a list, found {}",
                        json_kind(other)
                    ));
                }
            };
            let key = (repo.clone(), number);
            let first_review = reviews
                .get(&key)
                .into_iter()
                .flatten()
                .filter(|(login, _)| Some(login.as_str()) != author)
                .map(|(_, at)| *at)
                .min();
            let mut values = Map::new();
            values.insert("repository_id".into(), json!(format!("github:{repo}")));
            values.insert("number".into(), json!(number));
            values.insert("title".into(), json!(opt_str(body, "/title")?));
            values.insert("author_login".into(), json!(author));
            values.insert("state".into(), json!(state));
            values.insert("base_branch".into(), json!(opt_str(body, "/base/ref")?));
            values.insert("head_branch".into(), json!(opt_str(body, "/head/ref")?));
            values.insert("created_at".into(), json!(req_str(body, "/created_at")?));
            values.insert(
                "first_commit_at".into(),
                json!(first_commit.get(&key).map(DateTime::to_rfc3339)),
            );
            values.insert(
                "first_review_at".into(),
                json!(first_review.map(|t| t.to_rfc3339())),
            );
            values.insert("merged_at".into(), json!(merged_at));
            values.insert("closed_at".into(), json!(opt_str(body, "/closed_at")?));
            values.insert(
                "merge_commit_sha".into(),
                json!(opt_str(body, "/merge_commit_sha")?),
            );
            for (column, field) in [
                ("commit_count", "commits"),
                ("additions", "additions"),
                ("deletions", "deletions"),
                ("changed_files", "changed_files"),
            ] {
                values.insert(
                    column.into(),
                    body.get(field).cloned().unwrap_or(Value::Null),
                );
            }
            values.insert("labels".into(), json!(labels));
            Ok(values)
        })();
        match result {
            Ok(values) => decoded.row(
                &PULL_REQUESTS,
                values,
                vec![Identity::Repository(repo.clone())],
            ),
            Err(reason) => decoded.reject(payload, None, reason, body),
        }
    }
}
