//! What mab keeps of each build in its state directory: one directory per
//! build under `<state dir>/history/` (`$XDG_STATE_HOME/mab/history/`, by
//! default `~/.local/state/mab/history/`), holding each platform's full
//! build log (`logs/linux-arm64.log`) and the build's HTML report
//! (`report.html`). The last [`KEPT`] builds are kept; older ones are
//! removed when a new build starts (docs/progress.md).

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use mab_config::Platform;

/// How many builds' directories [`BuildRecord::create`] keeps, the new
/// one included.
pub const KEPT: usize = 20;

/// The directory of one build under `<state dir>/history/`.
#[derive(Clone, Debug)]
pub struct BuildRecord {
    dir: PathBuf,
}

impl BuildRecord {
    /// Creates the directory of a build that started at `started`:
    /// `<state_dir>/history/<UTC start, 20261130T194631Z>-<process id>`, a
    /// name that sorts by time. Then removes the oldest build directories
    /// so that [`KEPT`] remain; a directory that cannot be removed is left
    /// as it is. Errors: the directory cannot be created.
    pub fn create(state_dir: &Path, started: SystemTime) -> io::Result<BuildRecord> {
        let history = state_dir.join("history");
        let stamp = humantime::format_rfc3339_seconds(started)
            .to_string()
            .replace(['-', ':'], "");
        let dir = history.join(format!("{stamp}-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("logs"))?;
        prune(&history, KEPT);
        Ok(BuildRecord { dir })
    }

    /// The build's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the full build log of `platform` is written:
    /// `logs/<os>-<architecture>[-<variant>].log`.
    pub fn log_path(&self, platform: &Platform) -> PathBuf {
        self.dir
            .join("logs")
            .join(format!("{}.log", platform.to_string().replace('/', "-")))
    }

    /// Where the copy of the build's HTML report is written.
    pub fn report_path(&self) -> PathBuf {
        self.dir.join("report.html")
    }
}

/// Removes the oldest directories of `history` (by name, which sorts by
/// start time) until `keep` remain.
fn prune(history: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(history) else {
        return;
    };
    let mut names: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .map(|entry| entry.path())
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep);
    for old in &names[..excess] {
        let _ = std::fs::remove_dir_all(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_record_is_named_by_its_start_and_keeps_the_last_builds() {
        let state = tempfile::tempdir().unwrap();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_025_600);
        let mut dirs = Vec::new();
        for minute in 0..(KEPT as u64 + 3) {
            let record =
                BuildRecord::create(state.path(), start + Duration::from_secs(60 * minute))
                    .unwrap();
            dirs.push(record.dir().to_path_buf());
        }
        let first = dirs[0].file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(first, format!("20261130T080000Z-{}", std::process::id()));
        let left: Vec<bool> = dirs.iter().map(|dir| dir.exists()).collect();
        assert_eq!(left.iter().filter(|kept| **kept).count(), KEPT);
        assert!(left[..3].iter().all(|kept| !kept), "the three oldest go");
        let record = BuildRecord {
            dir: dirs[KEPT + 2].clone(),
        };
        let platform = Platform::from_parts("linux", "arm", Some("v7"));
        assert_eq!(
            record.log_path(&platform),
            dirs[KEPT + 2].join("logs/linux-arm-v7.log")
        );
        assert!(record.log_path(&platform).parent().unwrap().is_dir());
    }
}
