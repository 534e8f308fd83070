//! `--metadata-file`: what was published, as JSON.

use std::path::PathBuf;

use mab_config::Platform;
use serde::Serialize;

use crate::cli::BuildArgs;
use crate::environment::Environment;
use crate::failure::Failure;
use crate::ops::jobs::Built;

#[derive(Serialize)]
struct Metadata<'a> {
    image: &'a str,
    digest: Option<&'a str>,
    media_type: Option<&'a str>,
    tags: &'a [String],
    platforms: Vec<PlatformMetadata>,
}

#[derive(Serialize)]
struct PlatformMetadata {
    platform: Platform,
    runner: String,
    digest: Option<String>,
    emulated: bool,
    seconds: f64,
}

/// `--metadata-file`, resolved against `-C` and created before anything
/// is built, so that an unwritable path fails first (exit 2), not after
/// publishing.
pub(super) struct MetadataFile {
    /// Where to write; `None` without `--metadata-file`.
    pub(super) path: Option<PathBuf>,
}

impl MetadataFile {
    pub(super) fn create(
        args: &BuildArgs,
        environment: &Environment,
    ) -> Result<MetadataFile, Failure> {
        let Some(given) = &args.metadata_file else {
            return Ok(MetadataFile { path: None });
        };
        let start = match &args.project.directory {
            Some(directory) => environment.current_dir.join(directory),
            None => environment.current_dir.clone(),
        };
        let path = start.join(given);
        std::fs::File::create(&path).map_err(|error| {
            Failure::usage(
                format!("cannot write the metadata file {}: {error}", path.display()),
                Some("point --metadata-file at a writable path"),
            )
        })?;
        Ok(MetadataFile { path: Some(path) })
    }

    /// The build failed: no metadata file is left behind.
    pub(super) fn discard(&self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }

    pub(super) fn write(
        &self,
        image: &str,
        list: Option<(&str, &str)>,
        tags: &[String],
        built: &[Built],
    ) -> Result<(), Failure> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let metadata = Metadata {
            image,
            digest: list.map(|(digest, _)| digest),
            media_type: list.map(|(_, media_type)| media_type),
            tags,
            platforms: built
                .iter()
                .map(|built| PlatformMetadata {
                    platform: built.job.platform.clone(),
                    runner: built.job.runner.clone(),
                    digest: built.child.as_ref().map(|child| child.digest.clone()),
                    emulated: built.job.emulated,
                    seconds: built.seconds,
                })
                .collect(),
        };
        let json = serde_json::to_string_pretty(&metadata).expect("metadata always serialises");
        std::fs::write(path, json + "\n").map_err(|error| {
            Failure::runtime(
                format!(
                    "could not write the metadata file {}: {error}",
                    path.display()
                ),
                None,
            )
        })
    }
}
