//! Field-level validation errors that tell a user which field is wrong, what it holds and
//! what would be valid. Every parser and validator in this crate reports through these types
//! so the admission webhook, the CLI and status conditions all speak the same language.

use std::fmt;

/// One problem with one field of user input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON-path-like location, e.g. `spec.allowedHostPorts[2]`.
    pub path: String,
    /// The offending value as the user wrote it (may be empty for a missing field).
    pub value: String,
    /// What is wrong, e.g. `port 70000 is out of range`.
    pub problem: String,
    /// What would be valid, e.g. `a port between 1 and 65535`.
    pub expected: String,
}

impl FieldError {
    pub fn new(
        path: impl Into<String>,
        value: impl Into<String>,
        problem: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        Self {
            path: path.into(),
            value: value.into(),
            problem: problem.into(),
            expected: expected.into(),
        }
    }

    /// Re-anchor an error produced by a parser (which knows no path) at `path`.
    pub fn at(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "value"
        } else {
            &self.path
        };
        write!(
            f,
            "{path}: invalid value {:?}: {}; expected {}",
            self.value, self.problem, self.expected
        )
    }
}

impl std::error::Error for FieldError {}

/// All the problems found in one object. Validators collect every error rather than stopping
/// at the first, so a user can fix a manifest in one round trip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    pub fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }

    pub fn extend(&mut self, other: FieldErrors) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldError> {
        self.0.iter()
    }

    /// `Ok(())` when nothing was found, otherwise all errors.
    pub fn into_result(self) -> Result<(), FieldErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldErrors {}

impl From<FieldError> for FieldErrors {
    fn from(e: FieldError) -> Self {
        Self(vec![e])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_field_value_and_fix() {
        let e = FieldError::new(
            "spec.allowedHostPorts[0]",
            "70000/tcp",
            "port 70000 is out of range",
            "a port between 1 and 65535",
        );
        assert_eq!(
            e.to_string(),
            "spec.allowedHostPorts[0]: invalid value \"70000/tcp\": port 70000 is out of range; expected a port between 1 and 65535"
        );
    }

    #[test]
    fn errors_join_and_result() {
        let mut errs = FieldErrors::new();
        assert!(errs.clone().into_result().is_ok());
        errs.push(FieldError::new("a", "1", "bad", "good"));
        errs.push(FieldError::new("b", "2", "bad", "good"));
        let s = errs.to_string();
        assert!(s.contains("a: invalid value \"1\"") && s.contains("; b: invalid value \"2\""));
        assert_eq!(errs.into_result().unwrap_err().len(), 2);
    }
}
