//! Reading the config file: the one loader `serve`, `check-config`, the CLI
//! and reloads share, so every caller reports TOML errors with their line
//! number and validation errors with the field's name.

use std::path::Path;

use super::{err, Config, ConfigError, FileConfig};

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, |_| {})
    }

    /// Reads a TOML file, lets `overrides` change what it says (the CLI's
    /// flags), and validates the result.
    pub fn load_with(path: &Path, overrides: impl FnOnce(&mut FileConfig)) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| err(path.display().to_string(), e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut file = parse(&text)?;
        overrides(&mut file);
        Config::validate(file, base)
    }

    /// Parses and validates TOML text; relative paths resolve against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        Config::validate(parse(text)?, base)
    }
}

/// TOML → [`FileConfig`]; a syntax or type error names its line.
fn parse(text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let span = e.span().map(|s| line_of(text, s.start)).map(|l| format!("line {l}")).unwrap_or_default();
        err(if span.is_empty() { "config".to_string() } else { span }, e.message().to_string())
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}
