//! `deadbolt.toml`: every setting that has a flag and a `DEADBOLT_*` variable can be written in
//! one file, given with `--config FILE` (or `DEADBOLT_CONFIG`). Precedence: flags, then the
//! environment, then the file, then the defaults.
//!
//! How: the file's keys are the flags' long names (`public_url` or `public-url`); each value is
//! handed to the flag's own variable when the environment does not set it, before the command
//! line is parsed, so that every flag parses and validates the file's value exactly as its own.
//! A key that names no setting is refused with its name; so is a value that is not a string,
//! number or boolean.

use anyhow::{anyhow, bail, Context};
use clap::CommandFactory;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::Cli;

/// The flag naming the file, and its variable.
pub const FLAG: &str = "config";
pub const VAR: &str = "DEADBOLT_CONFIG";

/// Every setting a file may hold: the key (the flag's long name, `_` for `-`) and its variable,
/// over the CLI's global flags and those of `serve` (which `demo` shares).
pub fn settings() -> BTreeMap<String, String> {
    let cli = Cli::command();
    let serve = cli
        .get_subcommands()
        .find(|c| c.get_name() == "serve")
        .cloned();
    let mut out = BTreeMap::new();
    for arg in cli
        .get_arguments()
        .chain(serve.iter().flat_map(|c| c.get_arguments()))
    {
        if let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) {
            if long == FLAG {
                continue;
            }
            out.insert(long.replace('-', "_"), env.to_string_lossy().into_owned());
        }
    }
    out
}

/// The file named by `--config FILE`, `--config=FILE` or `DEADBOLT_CONFIG`.
fn named(args: &[OsString], env: Option<OsString>) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if a == format!("--{FLAG}") {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix(&format!("--{FLAG}=")) {
            return Some(PathBuf::from(v));
        }
    }
    env.filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The variables a file sets: each of its settings whose variable `is_set` does not already set.
pub fn variables(
    path: &Path,
    is_set: impl Fn(&str) -> bool,
) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let known = settings();
    let mut out = Vec::new();
    for (key, value) in table {
        let name = key.replace('-', "_");
        let Some(var) = known.get(&name) else {
            bail!(
                "{}: unknown setting {key:?} (settings are the flags' names: {})",
                path.display(),
                known.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        };
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => bail!(
                "{}: {key} is a {}, not a string, number or boolean",
                path.display(),
                other.type_str()
            ),
        };
        if !is_set(var) {
            out.push((var.clone(), value));
        }
    }
    Ok(out)
}

/// Reads the config file the command line or environment names, if any, and sets the
/// variables of the settings it holds that the environment does not. Called once, first thing,
/// before any thread is started (it changes the process's environment).
pub fn apply() -> anyhow::Result<Option<PathBuf>> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let Some(path) = named(&args, std::env::var_os(VAR)) else {
        return Ok(None);
    };
    let vars = variables(&path, |v| std::env::var_os(v).is_some())?;
    for (var, value) in vars {
        std::env::set_var(var, value);
    }
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_found_on_the_command_line_or_in_the_environment() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            named(&args(&["deadbolt", "--config", "a.toml", "serve"]), None),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            named(
                &args(&["deadbolt", "serve", "--config=b.toml"]),
                Some("c.toml".into())
            ),
            Some(PathBuf::from("b.toml"))
        );
        assert_eq!(
            named(&args(&["deadbolt", "serve"]), Some("c.toml".into())),
            Some(PathBuf::from("c.toml"))
        );
        assert_eq!(
            named(&args(&["deadbolt", "--", "--config", "x"]), None),
            None
        );
        assert_eq!(named(&args(&["deadbolt"]), Some("".into())), None);
    }

    /// The README's one table of settings names each, and nothing else.
    #[test]
    fn the_readme_lists_every_setting() {
        let readme = include_str!("../../../../README.md");
        let listed: std::collections::BTreeSet<String> = readme
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once("` | `--"))
            .map(|(key, _)| key.to_string())
            .collect();
        let settings: std::collections::BTreeSet<String> = settings().into_keys().collect();
        assert_eq!(
            listed, settings,
            "README's settings table against the flags"
        );
    }

    #[test]
    fn every_serve_flag_and_global_flag_with_a_variable_is_a_setting() {
        let s = settings();
        assert_eq!(s["db"], "DEADBOLT_DB");
        assert_eq!(s["listen"], "DEADBOLT_LISTEN");
        assert_eq!(s["public_url"], "DEADBOLT_PUBLIC_URL");
        assert_eq!(s["attempts_retention"], "DEADBOLT_ATTEMPTS_RETENTION");
        assert!(!s.contains_key("config"));
    }
}
