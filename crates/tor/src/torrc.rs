//! A typed torrc: an ordered list of `Option value` lines.
//!
//! Order matters to tor for list options (`HiddenServiceDir` followed by its
//! `HiddenServicePort`s), so lines are kept exactly in insertion order.
//! Values are refused when they would change the file's structure: line
//! breaks, NUL, a `#` (starts a comment) or a trailing `\` (continues the line).

use std::fmt::Display;
use std::path::Path;

use crate::err::{Error, Result};

/// An ordered torrc.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Torrc {
    lines: Vec<(String, String)>,
}

impl Torrc {
    /// An empty torrc.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `option value`.
    pub fn push(&mut self, option: &str, value: impl Display) -> Result<&mut Self> {
        let value = value.to_string();
        check(option, &value)?;
        self.lines.push((option.to_string(), value));
        Ok(self)
    }

    /// Builder form of [`Self::push`].
    pub fn with(mut self, option: &str, value: impl Display) -> Result<Self> {
        self.push(option, value)?;
        Ok(self)
    }

    /// Appends every line of `other`.
    pub fn extend(&mut self, other: &Torrc) {
        self.lines.extend(other.lines.iter().cloned());
    }

    /// True when `option` (case-insensitive, as tor reads it) has a line.
    pub fn contains(&self, option: &str) -> bool {
        self.lines
            .iter()
            .any(|(o, _)| o.eq_ignore_ascii_case(option))
    }

    /// The values of `option`, in order.
    pub fn values<'a>(&'a self, option: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.lines
            .iter()
            .filter(move |(o, _)| o.eq_ignore_ascii_case(option))
            .map(|(_, v)| v.as_str())
    }

    /// All lines in order.
    pub fn lines(&self) -> &[(String, String)] {
        &self.lines
    }

    /// The file text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (o, v) in &self.lines {
            out.push_str(o);
            if !v.is_empty() {
                out.push(' ');
                out.push_str(v);
            }
            out.push('\n');
        }
        out
    }

    /// Writes the file (replacing it).
    pub fn write_to(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.render()).map_err(|source| Error::File {
            action: "write",
            path: path.to_path_buf(),
            source,
        })
    }
}

impl Display for Torrc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

fn check(option: &str, value: &str) -> Result<()> {
    let bad = |detail: &str| {
        Err(Error::TorrcLine {
            option: option.to_string(),
            detail: detail.to_string(),
        })
    };
    if option.is_empty()
        || !option
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return bad("an option name is one word of letters, digits and `_`");
    }
    if value.contains(['\n', '\r', '\0']) {
        return bad(&format!("value {value:?} contains a line break or NUL"));
    }
    if value.contains('#') {
        return bad(&format!(
            "value {value:?} contains `#`, which starts a torrc comment"
        ));
    }
    if value.ends_with('\\') {
        return bad(&format!(
            "value {value:?} ends with `\\`, which continues the line"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_in_order() {
        let mut t = Torrc::new();
        t.push("HiddenServiceDir", "/x/hs").unwrap();
        t.push("HiddenServicePort", "80 127.0.0.1:8080").unwrap();
        t.push("SocksPort", 0).unwrap();
        assert_eq!(
            t.render(),
            "HiddenServiceDir /x/hs\nHiddenServicePort 80 127.0.0.1:8080\nSocksPort 0\n"
        );
        assert!(t.contains("socksport"));
        assert_eq!(t.values("SOCKSPORT").collect::<Vec<_>>(), ["0"]);
    }

    #[test]
    fn refuses_structure_changes() {
        let mut t = Torrc::new();
        assert!(t.push("Nickname", "a\nControlPort 0.0.0.0:1").is_err());
        assert!(t.push("Nickname", "a\r").is_err());
        assert!(t.push("ContactInfo", "x # y").is_err());
        assert!(t.push("Nickname", "a\\").is_err());
        assert!(t.push("Bad Option", "1").is_err());
        assert!(t.push("", "1").is_err());
        assert!(t.lines().is_empty());
    }
}
