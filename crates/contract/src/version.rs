//! The `version` field every versioned document (plan, image.json) starts with, read before the
//! rest so a newer document gets "wrong version" rather than an unknown-field error. A value
//! that is there but unusable is reported as what it is, not as a missing field.

/// Why a document's `version` cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("missing field `version`")]
    Missing,
    #[error("\"version\": {0} is out of range (a whole number from 0 to {max})", max = u32::MAX)]
    OutOfRange(serde_json::Number),
    #[error("\"version\": {0} is not a number (write it without quotes)")]
    NotANumber(serde_json::Value),
}

/// The document's `version`: a whole number from 0 to `u32::MAX` (what the types hold).
pub fn document_version(doc: &serde_json::Value) -> Result<u64, VersionError> {
    let Some(v) = doc.get("version") else {
        return Err(VersionError::Missing);
    };
    match v {
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(x) if x <= u64::from(u32::MAX) => Ok(x),
            _ => Err(VersionError::OutOfRange(n.clone())),
        },
        other => Err(VersionError::NotANumber(other.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_out_of_range_and_wrong_type_are_told_apart() {
        assert_eq!(document_version(&json!({"version": 2})), Ok(2));
        assert!(document_version(&json!({}))
            .unwrap_err()
            .to_string()
            .contains("missing"));
        for v in [json!(-1), json!(1.5), json!(1e40), json!(4294967296u64)] {
            let e = document_version(&json!({ "version": v }))
                .unwrap_err()
                .to_string();
            assert!(e.contains("out of range"), "{v}: {e}");
        }
        for v in [json!("1"), json!(null), json!([1]), json!(true)] {
            let e = document_version(&json!({ "version": v }))
                .unwrap_err()
                .to_string();
            assert!(e.contains("not a number"), "{v}: {e}");
        }
    }
}
