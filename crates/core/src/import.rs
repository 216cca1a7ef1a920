//! The SDK import payload: a JSON array of user rows, each a JSON object of known fields.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use thiserror::Error;

/// Most rows one import request may carry.
pub const MAX_IMPORT_ROWS: usize = 100_000;

/// One row as the company's back end sends it; `domain` names the application by its issuer.
/// Strings are borrowed from the request body where JSON escapes allow: a 100,000-row import is
/// parsed without a copy of every field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportUser<'a> {
    #[serde(default, borrow)]
    pub first_name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub last_name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub email: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub domain: Cow<'a, str>,
    #[serde(default, borrow)]
    pub phone: Option<Cow<'a, str>>,
    #[serde(rename = "userAccountId", borrow)]
    pub user_account_id: Cow<'a, str>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ImportError {
    #[error("invalid request body: {0}")]
    NotJson(String),
    #[error("at most {MAX_IMPORT_ROWS} rows per request")]
    TooManyRows,
    #[error("row {0}: invalid request body: {1}")]
    Row(usize, String),
}

/// Parses an import body. Rows are read raw first, so that a request over the row limit is
/// refused before any row is decoded, and so that each row must be an object: serde would
/// otherwise fill a row's fields from an array in order.
pub fn parse_import(bytes: &[u8]) -> Result<Vec<ImportUser<'_>>, ImportError> {
    let raw: Vec<&RawValue> =
        serde_json::from_slice(bytes).map_err(|e| ImportError::NotJson(e.to_string()))?;
    if raw.len() > MAX_IMPORT_ROWS {
        return Err(ImportError::TooManyRows);
    }
    raw.iter()
        .enumerate()
        .map(|(i, row)| {
            let text = row.get();
            if !text.starts_with('{') {
                return Err(ImportError::Row(i, "expected a JSON object".into()));
            }
            serde_json::from_str(text).map_err(|e| ImportError::Row(i, e.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_objects_of_known_fields() {
        let rows = parse_import(
            br#"[{"domain":"a.example.com","userAccountId":"ann","email":"ann@example.com"},
                 {"domain":"a.example.com","userAccountId":"bob","first_name":null}]"#,
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].email.as_deref(), Some("ann@example.com"));
        assert_eq!(rows[1].first_name, None);
        assert_eq!(parse_import(b"[]").unwrap(), vec![]);
        for (body, want) in [
            (
                &br#"{"domain":"a","userAccountId":"x"}"#[..],
                "invalid request body",
            ),
            (
                br#"[["a","b","c","a.example.com","p","x"]]"#,
                "row 0: invalid request body: expected a JSON object",
            ),
            (
                br#"[{"domain":"a","userAccountId":5}]"#,
                "row 0: invalid request body: invalid type",
            ),
            (
                br#"[{"domain":"a","userAccountId":"x","admin":true}]"#,
                "unknown field",
            ),
            (br#"[{"domain":"a"}]"#, "missing field `userAccountId`"),
            (b"[", "invalid request body"),
        ] {
            let e = parse_import(body).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn the_row_limit_is_checked_before_rows_are_read() {
        let body = format!("[{}1]", "1,".repeat(MAX_IMPORT_ROWS));
        assert_eq!(parse_import(body.as_bytes()), Err(ImportError::TooManyRows));
    }
}
