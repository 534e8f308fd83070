//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "mab",
    version,
    about = "Build one container image for many CPU architectures on native runner hosts",
    long_about = "mab splits a multi-platform image build into one job per platform, sends each \
                  job over SSH to a runner host whose CPU is that architecture (or to a QEMU-emulated \
                  builder when no native host exists), and publishes one manifest list under the \
                  release tags."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Plan, build every platform, verify, publish one manifest list.
    Build(BuildArgs),
    /// Show which runner builds which platform, and why; nothing is built.
    Plan(PlanArgs),
    /// Show a published list: platform, digest and size of each entry.
    Inspect {
        /// The image reference, such as registry.example.com/team/app:1.0.
        reference: String,
    },
}

/// Where the project and runners are.
#[derive(Debug, Args, Clone, Default)]
pub struct ProjectArgs {
    /// Run as if started in DIR.
    #[arg(short = 'C', value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// Path to mab.toml (default: found in the current directory or the nearest parent).
    #[arg(long, value_name = "FILE")]
    pub manifest_path: Option<PathBuf>,
    /// The runners file (default: MAB_RUNNERS, runners.toml beside mab.toml, ~/.config/mab/runners.toml).
    #[arg(long, value_name = "FILE")]
    pub runners: Option<PathBuf>,
    /// Build these platforms instead of those in mab.toml (comma-separated or repeated).
    #[arg(long = "platform", value_name = "P[,P]", value_delimiter = ',')]
    pub platforms: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Publish under exactly these tags (repeatable), instead of the computed ones.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// A build argument (repeatable); overrides [image.args].
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// The build stage to build, overriding mab.toml.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Build and verify each platform on its runner; write nothing to the registry.
    #[arg(long)]
    pub no_push: bool,
    /// How progress is shown on stderr.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// Write the build's result as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    /// Bars (one per platform).
    Tty,
    /// One line per event.
    Plain,
    /// One JSON object per event.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}
