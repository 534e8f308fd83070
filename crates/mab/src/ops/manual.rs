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
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let command = with_synopses(command);
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

/// `command` and its subcommands (built: their bin names set), each with
/// its synopsis written out as its usage, for the manual pages only:
/// clap_mangen 0.3.3 draws an option of the synopsis without its value
/// (`[-C ] [--image]`), but an overridden usage as it is given. The
/// synopsis is clap's: `[...]` around what is optional, `<...>` around a
/// required subcommand, `...` after what repeats.
fn with_synopses(command: clap::Command) -> clap::Command {
    let names: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    let synopsis = synopsis(&command);
    let mut command = command.override_usage(synopsis);
    for name in names {
        command = command.mut_subcommand(name, with_synopses);
    }
    command
}

/// `mab init [-C DIR] [--image NAME] ... [-h|--help]`: the bin name, each
/// option that is not hidden with its value names, then the positionals
/// (`mab inspect [OPTIONS...] REFERENCE`) and the subcommand.
fn synopsis(command: &clap::Command) -> String {
    let mut words = vec![command
        .get_bin_name()
        .unwrap_or(command.get_name())
        .to_owned()];
    let value = |arg: &clap::Arg| {
        arg.get_value_names()
            .map(|names| names.join(" "))
            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase())
    };
    let shown = command.get_arguments().filter(|arg| !arg.is_hide_set());
    let (positionals, options): (Vec<_>, Vec<_>) = shown.partition(|arg| arg.is_positional());
    for arg in options.into_iter().chain(positionals) {
        let repeats = matches!(
            arg.get_action(),
            clap::ArgAction::Append | clap::ArgAction::Count
        ) || arg
            .get_num_args()
            .is_some_and(|range| range.max_values() > 1);
        let mut word = match (arg.get_short(), arg.get_long()) {
            _ if arg.is_positional() => value(arg),
            (Some(short), Some(long)) => format!("-{short}|--{long}"),
            (Some(short), None) => format!("-{short}"),
            (None, Some(long)) => format!("--{long}"),
            (None, None) => continue,
        };
        let takes_value = arg.get_num_args().is_some_and(|range| range.takes_values());
        if !arg.is_positional() && takes_value {
            word = format!("{word} {}", value(arg));
        }
        if repeats {
            word.push_str("...");
        }
        words.push(match arg.is_required_set() {
            true => word,
            false => format!("[{word}]"),
        });
    }
    if command.has_subcommands() {
        words.push(match command.is_subcommand_required_set() {
            true => "<COMMAND>".to_owned(),
            false => "[COMMAND]".to_owned(),
        });
    }
    words.join(" ")
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
        // The synopsis names each option's value.
        let init = std::fs::read_to_string(dir.path().join("mab-init.1")).unwrap();
        let synopsis = init
            .split(".SH SYNOPSIS\n")
            .nth(1)
            .and_then(|rest| rest.split("\n.SH").next())
            .unwrap();
        for shown in [
            "[\\-C DIR]",
            "[\\-\\-image NAME]",
            "[\\-\\-color WHEN]",
            "[\\-h|\\-\\-help]",
        ] {
            assert!(synopsis.contains(shown), "{shown} in {synopsis}");
        }
        let runners = std::fs::read_to_string(dir.path().join("mab-runners.1")).unwrap();
        assert!(
            runners.contains("\\fBmab runners\\fR [\\-v|\\-\\-verbose] [\\-q|\\-\\-quiet] [\\-\\-color WHEN] [\\-h|\\-\\-help] <COMMAND>\n"),
            "{runners}"
        );
        let missing = dir.path().join("missing");
        let failure = man(Some(&missing)).unwrap_err();
        assert!(format!("{failure:?}").contains("missing"), "{failure:?}");
    }
}
