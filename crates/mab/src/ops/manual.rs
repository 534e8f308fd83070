//! `mab completions SHELL` and `mab man`: the shell completion scripts and
//! the manual pages, generated from the clap definitions of [`Cli`] (so
//! they name every command and flag `--help` names), by `clap_complete`
//! and `clap_mangen`.

use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::failure::Failure;

/// The completion script of `shell` for `mab`, as the shell's own
/// completion system loads it (docs/install.md says where each goes).
pub fn completions(shell: clap_complete::Shell) -> String {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "mab", &mut script);
    String::from_utf8_lossy(&script).into_owned()
}

/// mab's manual page, `mab(1)` in roff, as the output when `dir` is
/// `None`; else writes `mab.1` and one page per command (`mab-build.1`,
/// `mab-runners-add.1`, ...) into the existing directory `dir` and says
/// which. A directory that is missing or cannot be written is exit 1,
/// naming it.
pub fn man(dir: Option<&Path>) -> Result<String, Failure> {
    let command = Cli::command();
    let Some(dir) = dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command)
            .render(&mut page)
            .map_err(|error| {
                Failure::runtime(format!("cannot render the manual page: {error}"), None)
            })?;
        return Ok(String::from_utf8_lossy(&page).into_owned());
    };
    clap_mangen::generate_to(command, dir).map_err(|error| {
        Failure::runtime(
            format!(
                "cannot write the manual pages into {}: {error}",
                dir.display()
            ),
            Some("give an existing directory you can write to, such as ~/.local/share/man/man1"),
        )
    })?;
    Ok(format!(
        "wrote mab.1 and a page per command into {}\n",
        dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shell's script names the commands; the manual page names
    /// them and documents a flag of `mab build`.
    #[test]
    fn completions_and_the_manual_name_every_command() {
        let commands = [
            "build",
            "plan",
            "runners",
            "init",
            "inspect",
            "completions",
            "man",
        ];
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
            clap_complete::Shell::PowerShell,
        ] {
            let script = completions(shell);
            for command in commands {
                assert!(script.contains(command), "{shell}: {command}");
            }
        }
        let page = man(None).unwrap();
        assert!(page.contains("\n.TH mab 1 "), "{page}");
        for command in commands {
            assert!(page.contains(&format!("mab\\-{command}")), "{command}");
        }
    }

    #[test]
    fn one_page_per_command_is_written_into_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        man(Some(dir.path())).unwrap();
        for page in ["mab.1", "mab-build.1", "mab-runners-add.1", "mab-man.1"] {
            let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
            assert!(text.contains(".TH"), "{page}");
        }
        let missing = dir.path().join("missing");
        let failure = man(Some(&missing)).unwrap_err();
        assert!(format!("{failure:?}").contains("missing"), "{failure:?}");
    }
}
