use std::fmt;

use serde::{Deserialize, Serialize};

use crate::located::Pos;

/// A place in a pipeline file, 1-based, columns counted in characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One problem found in a spec (or in `-p` overrides, which have no location).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub location: Option<Location>,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(loc) => write!(f, "{loc}: error: {}", self.message)?,
            None => write!(f, "error: {}", self.message)?,
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in a spec; the run must not start while there is one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.diagnostics))]
pub struct SpecError {
    pub diagnostics: Vec<Diagnostic>,
}

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl SpecError {
    pub(crate) fn single(diagnostic: Diagnostic) -> Self {
        Self {
            diagnostics: vec![diagnostic],
        }
    }
}

/// Collects diagnostics for one file so that all problems are reported at once.
pub(crate) struct Diagnostics {
    file: String,
    list: Vec<Diagnostic>,
}

impl Diagnostics {
    pub(crate) fn new(file: &str) -> Self {
        Self {
            file: file.to_owned(),
            list: Vec::new(),
        }
    }

    pub(crate) fn location(&self, pos: Pos) -> Location {
        Location {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
        }
    }

    pub(crate) fn error(&mut self, pos: Pos, message: impl Into<String>, hint: impl Into<String>) {
        let location = Some(self.location(pos));
        self.list.push(Diagnostic {
            location,
            message: message.into(),
            hint: Some(hint.into()).filter(|h| !h.is_empty()),
        });
    }

    /// Reports in file order so the output reads top to bottom like the spec.
    pub(crate) fn into_error(mut self) -> SpecError {
        self.list.sort_by(|a, b| {
            let key = |d: &Diagnostic| d.location.as_ref().map(|l| (l.line, l.column));
            key(a).cmp(&key(b))
        });
        SpecError {
            diagnostics: self.list,
        }
    }

    pub(crate) fn into_result<T>(self, value: T) -> Result<T, SpecError> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            Err(self.into_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_puts_each_diagnostic_and_hint_on_its_own_line() {
        let err = SpecError {
            diagnostics: vec![
                Diagnostic {
                    location: Some(Location {
                        file: "p.yaml".into(),
                        line: 3,
                        column: 7,
                    }),
                    message: "unknown key `imagee`".into(),
                    hint: Some("did you mean `image`?".into()),
                },
                Diagnostic {
                    location: None,
                    message: "unknown param 'x'".into(),
                    hint: None,
                },
            ],
        };
        assert_eq!(
            err.to_string(),
            "p.yaml:3:7: error: unknown key `imagee`\n  hint: did you mean `image`?\nerror: unknown param 'x'"
        );
    }
}
