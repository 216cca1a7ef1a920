//! `deadbolt backup` and `deadbolt restore`: a consistent copy of an SQLite store taken while it
//! serves, with the master key that opens its signing keys, and its restoration into a new
//! store. (A PostgreSQL store is backed up with PostgreSQL's own tools: see the README.)

use anyhow::{bail, Context};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::Cli;

#[derive(Serialize)]
pub(super) struct BackedUp {
    backup: PathBuf,
    bytes: u64,
    /// The copy of the master key file, or why there is none.
    key: Option<PathBuf>,
    note: Option<&'static str>,
    took_ms: u128,
}

#[derive(Serialize)]
pub(super) struct Restored {
    restored: PathBuf,
    bytes: u64,
    key: Option<PathBuf>,
    applications: usize,
    signing_keys: usize,
}

/// The SQLite file a store URL names.
fn sqlite_file(url: &str) -> anyhow::Result<PathBuf> {
    match url.strip_prefix("sqlite://") {
        Some(p) if !p.is_empty() && p != ":memory:" => Ok(PathBuf::from(p)),
        _ => bail!(
            "{url} is not an SQLite file: back up PostgreSQL with pg_dump, and keep the master key with it (see the README)"
        ),
    }
}

/// `FILE.key`: where a store's (or a backup's) master key file lives beside it.
fn key_beside(file: &Path) -> PathBuf {
    let mut p = file.as_os_str().to_owned();
    p.push(".key");
    PathBuf::from(p)
}

/// The master key file this CLI opens the store with, if the key comes from a file.
fn key_file(cli: &Cli, store: &Path) -> Option<PathBuf> {
    let source = cli.key_source();
    if source.value.is_some() {
        return None;
    }
    Some(source.file.unwrap_or_else(|| key_beside(store)))
}

/// Copies `from` to the new file `to` (mode 0600), synced to disk.
fn copy_private(from: &Path, to: &Path) -> anyhow::Result<u64> {
    let bytes = std::fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    Ok(bytes.len() as u64)
}

pub(super) async fn backup(cli: &Cli, to: &Path) -> anyhow::Result<BackedUp> {
    let store = sqlite_file(&cli.db)?;
    let service = cli.open().await?;
    let started = Instant::now();
    let bytes = service.backup_to(to).await?;
    let (key, note) = match key_file(cli, &store) {
        Some(k) => {
            let dest = key_beside(to);
            copy_private(&k, &dest).with_context(|| {
                format!("the store was backed up to {}, but not its master key", to.display())
            })?;
            (Some(dest), None)
        }
        None => (
            None,
            Some("the master key came from DEADBOLT_MASTER_KEY: keep it with the backup, which cannot be used without it"),
        ),
    };
    Ok(BackedUp {
        backup: to.to_path_buf(),
        bytes,
        key,
        note,
        took_ms: started.elapsed().as_millis(),
    })
}

pub(super) async fn restore(cli: &Cli, from: &Path) -> anyhow::Result<Restored> {
    let target = sqlite_file(&cli.db)?;
    if std::fs::metadata(&target).is_ok_and(|m| m.len() > 0) {
        bail!(
            "{} exists: restore into a new file and start the server on it (a server may be running on this one)",
            target.display()
        );
    }
    let from_key = key_beside(from);
    let target_key = key_file(cli, &target);
    if let Some(dest) = &target_key {
        if !from_key.exists() && !dest.exists() {
            bail!(
                "no master key beside the backup ({}): give the key it was made with (--master-key-file, or DEADBOLT_MASTER_KEY)",
                from_key.display()
            );
        }
    }
    // The key first: a store restored without the key that opens it would look usable.
    let key = match (&target_key, from_key.exists()) {
        (Some(dest), true) if !dest.exists() => {
            copy_private(&from_key, dest)?;
            Some(dest.clone())
        }
        (Some(dest), true) => {
            if std::fs::read(dest)? != std::fs::read(&from_key)? {
                bail!(
                    "{} exists and is not the backup's key ({}): move it away first",
                    dest.display(),
                    from_key.display()
                );
            }
            Some(dest.clone())
        }
        _ => None,
    };
    // A half-written store must never be mistaken for the restored one: written beside the
    // target, then renamed over its name in one step.
    let partial = target.with_extension("restoring");
    let _ = std::fs::remove_file(&partial);
    let bytes = copy_private(from, &partial)?;
    std::fs::rename(&partial, &target)
        .with_context(|| format!("cannot move the restored store to {}", target.display()))?;
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    let service = cli.open().await?;
    // Every signing key must open with the key the store will be served with.
    let mut signing_keys = 0;
    let apps = service.applications(None).await?;
    for app in &apps {
        match service.signing_secrets(&app.id).await {
            Ok(keys) => signing_keys += keys.len(),
            Err(e) => bail!(
                "the store was restored to {}, but {e}: start it with the master key the backup was made with",
                target.display()
            ),
        }
    }
    Ok(Restored {
        restored: target,
        bytes,
        key,
        applications: apps.len(),
        signing_keys,
    })
}
