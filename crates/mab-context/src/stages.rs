//! The build stages a Dockerfile names, read as BuildKit's Dockerfile
//! parser reads them, so that a wrong `target` is refused before any
//! engine is asked.

/// One instruction of a Dockerfile, its continuation lines joined.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Instruction {
    /// The line it starts on, counted from 1.
    line: usize,
    /// The instruction as written, continuation lines joined by a space.
    text: String,
}

impl Instruction {
    /// Its keyword, uppercased (`RUN`).
    fn keyword(&self) -> String {
        self.text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_uppercase()
    }
}

/// The instructions of `text`, read as BuildKit's Dockerfile parser
/// (moby/buildkit `frontend/dockerfile/parser`) reads them: a line whose
/// first non-blank character is `#` is a comment, also inside a
/// continuation; a line ending in the escape character (`\`, or `` ` ``
/// after an `# escape=`` ` `` parser directive at the top) continues on the
/// next line; blank lines inside a continuation are skipped.
fn instructions(text: &str) -> Vec<Instruction> {
    let escape = escape_character(text);
    let mut found = Vec::new();
    let mut current: Option<Instruction> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        let line = line.trim_end();
        let (part, continues) = match line.strip_suffix(escape) {
            Some(continued) => (continued, true),
            None => (line, false),
        };
        let instruction = current.get_or_insert_with(|| Instruction {
            line: index + 1,
            text: String::new(),
        });
        if !instruction.text.is_empty() {
            instruction.text.push(' ');
        }
        instruction.text.push_str(part);
        if !continues {
            found.extend(current.take());
        }
    }
    found.extend(current);
    found
}

/// [`step_line`] for a step named by Buildah (`[2/2] STEP 3/4: RUN make`).
fn buildah_step_line(text: &str, step: &str) -> Option<usize> {
    let (stage, rest) = match step.strip_prefix('[') {
        Some(labelled) => {
            let (label, rest) = labelled.split_once("] ")?;
            let (index, total) = label.split_once('/')?;
            (
                Some((index.parse::<usize>().ok()?, total.parse::<usize>().ok()?)),
                rest,
            )
        }
        None => (None, step),
    };
    let (position, _instruction) = rest.strip_prefix("STEP ")?.split_once(": ")?;
    let (index, total) = position.split_once('/')?;
    let (index, total): (usize, usize) = (index.parse().ok()?, total.parse().ok()?);
    let mut stages: Vec<Vec<usize>> = Vec::new();
    for instruction in instructions(text) {
        if instruction.keyword() == "FROM" {
            stages.push(Vec::new());
        }
        // Instructions before the first FROM (global ARGs) are no step.
        if let Some(steps) = stages.last_mut() {
            steps.push(instruction.line);
        }
    }
    let steps = match stage {
        Some((stage, stages_total)) if stages_total == stages.len() => {
            stages.get(stage.checked_sub(1)?)?
        }
        None if stages.len() == 1 => &stages[0],
        _ => return None,
    };
    (steps.len() == total)
        .then(|| steps.get(index.checked_sub(1)?).copied())
        .flatten()
}

/// The names of the stages `text` declares (`FROM [--flag...] IMAGE AS
/// NAME`), lowercased, in order; unnamed stages are left out.
///
/// Read as BuildKit reads a Dockerfile ([`instructions`]): instructions
/// and `AS` are case-insensitive, stage names too (`--target Build`
/// selects `FROM x AS build`). A stage is selected by name only:
/// `--target 0` is no stage (BuildKit's `--target` takes no index).
pub fn stage_names(text: &str) -> Vec<String> {
    instructions(text)
        .iter()
        .filter_map(|instruction| stage_name(&instruction.text))
        .collect()
}

/// A build argument a Dockerfile declares (`ARG NAME[=DEFAULT]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredArg {
    /// As written (build argument names are case-sensitive).
    pub name: String,
    /// The default as BuildKit reads it (quotes removed), if it has one.
    pub default: Option<String>,
}

/// The build arguments `text` declares, in order, each name once (its
/// first declaration), without the ones the builder sets itself: BuildKit's
/// platform arguments (`TARGETPLATFORM`, `BUILDARCH`, ...) and the proxy
/// variables docker passes on (`HTTP_PROXY`, ...), and mab's own
/// (`MAB_...`).
///
/// An `ARG` takes one or more `NAME` or `NAME=VALUE` words, split as a
/// shell splits them (BuildKit's `parseNameOrNameVal`); a word that does
/// not split (an open quote) ends that instruction's list.
pub fn declared_args(text: &str) -> Vec<DeclaredArg> {
    const SET_BY_THE_BUILDER: [&str; 8] = [
        "TARGETPLATFORM",
        "TARGETOS",
        "TARGETARCH",
        "TARGETVARIANT",
        "BUILDPLATFORM",
        "BUILDOS",
        "BUILDARCH",
        "BUILDVARIANT",
    ];
    let mut found: Vec<DeclaredArg> = Vec::new();
    for instruction in instructions(text) {
        if instruction.keyword() != "ARG" {
            continue;
        }
        let rest = instruction.text.trim_start()["ARG".len()..].trim();
        for word in shlex::split(rest).unwrap_or_default() {
            let (name, default) = match word.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (word, None),
            };
            let proxy = name.to_ascii_uppercase().ends_with("_PROXY");
            if name.is_empty()
                || proxy
                || name.starts_with("MAB_")
                || SET_BY_THE_BUILDER.contains(&name.as_str())
                || found.iter().any(|known| known.name == name)
            {
                continue;
            }
            found.push(DeclaredArg { name, default });
        }
    }
    found
}

/// The line (from 1) of the Dockerfile `text` where the build step that
/// BuildKit or Buildah (Podman's builder) named `step` is written, when
/// that can be told for sure.
///
/// Buildah names a step `[S/T] STEP I/N: INSTRUCTION` (`[2/2] STEP 3/4:
/// RUN make`; no `[S/T] ` in a Dockerfile of one stage): the I-th of the N
/// instructions of the S-th of T stages, its `FROM` the first, every other
/// instruction counted.
///
/// BuildKit names a step `[STAGE I/N] INSTRUCTION` (`[build 2/3] RUN make`;
/// no `STAGE ` in an unnamed stage): the I-th of the N steps of that stage,
/// which are its `RUN`, `COPY`, `ADD` and `WORKDIR` instructions, after
/// its `FROM` when that pulls an image (not `scratch` or an earlier stage).
/// The instruction is shown with its variables expanded, so it is matched
/// by position and keyword, not by its text. `None` when the name is not
/// of that form, or no stage or more than one fits.
pub fn step_line(text: &str, step: &str) -> Option<usize> {
    if let Some(line) = buildah_step_line(text, step) {
        return Some(line);
    }
    let (label, instruction) = step.strip_prefix('[')?.split_once("] ")?;
    let (stage, position) = match label.rsplit_once(' ') {
        Some((stage, position)) => (Some(stage.to_lowercase()), position),
        None => (None, label),
    };
    let (index, total) = position.split_once('/')?;
    let (index, total): (usize, usize) = (index.parse().ok()?, total.parse().ok()?);
    let keyword = instruction.split_whitespace().next()?.to_uppercase();

    // Each stage's name, and its steps' lines and keywords.
    type Steps = Vec<(usize, String)>;
    let mut stages: Vec<(Option<String>, Steps)> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for instruction in instructions(text) {
        let word = instruction.keyword();
        if word == "FROM" {
            let name = stage_name(&instruction.text);
            let image = instruction
                .text
                .split_whitespace()
                .skip(1)
                .find(|word| !word.starts_with("--"))
                .unwrap_or_default()
                .to_lowercase();
            let mut steps = Vec::new();
            if image != "scratch" && !names.contains(&image) {
                steps.push((instruction.line, word));
            }
            names.extend(name.clone());
            stages.push((name, steps));
        } else if ["RUN", "COPY", "ADD", "WORKDIR"].contains(&word.as_str()) {
            if let Some((_, steps)) = stages.last_mut() {
                steps.push((instruction.line, word));
            }
        }
    }
    let mut fitting = stages
        .iter()
        .filter(|(name, steps)| *name == stage && steps.len() == total)
        .filter_map(|(_, steps)| steps.get(index.checked_sub(1)?))
        .filter(|(_, word)| *word == keyword)
        .map(|(line, _)| *line);
    let line = fitting.next()?;
    fitting.next().is_none().then_some(line)
}

/// The stage name a `FROM` instruction gives, if it is one and names one.
fn stage_name(instruction: &str) -> Option<String> {
    let mut words = instruction.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("FROM") {
        return None;
    }
    let arguments: Vec<&str> = words.filter(|word| !word.starts_with("--")).collect();
    match arguments.as_slice() {
        [_image, keyword, name] if keyword.eq_ignore_ascii_case("AS") => Some(name.to_lowercase()),
        _ => None,
    }
}

/// The escape character: `` ` `` when an `escape` parser directive at the
/// top of the file says so, else `\`. Directives are `# key=value` lines
/// before anything else (a blank line, a comment or an instruction ends
/// them).
fn escape_character(text: &str) -> char {
    for line in text.lines() {
        let Some(directive) = line.trim().strip_prefix('#') else {
            break;
        };
        let Some((key, value)) = directive.split_once('=') else {
            break;
        };
        if key.trim().eq_ignore_ascii_case("escape") {
            return if value.trim() == "`" { '`' } else { '\\' };
        }
    }
    '\\'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_declared_build_arguments() {
        let text = "ARG GO_VERSION=1.22\nFROM golang:${GO_VERSION} AS build\n\
                    ARG TARGETARCH\narg FEATURES=\"a b\" \\\n  DEBUG\n\
                    ARG http_proxy\nARG MAB_VERSION\nFROM scratch\nARG GO_VERSION\n";
        let args = declared_args(text);
        let pairs: Vec<(&str, Option<&str>)> = args
            .iter()
            .map(|arg| (arg.name.as_str(), arg.default.as_deref()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("GO_VERSION", Some("1.22")),
                ("FEATURES", Some("a b")),
                ("DEBUG", None)
            ]
        );
    }

    #[test]
    fn reads_stage_names_as_buildkit() {
        // (what the case shows, Dockerfile, stage names)
        let cases: &[(&str, &str, &[&str])] = &[
            ("one unnamed stage", "FROM scratch\nCOPY . /\n", &[]),
            (
                "named stages in order",
                "FROM alpine AS build\nRUN make\nFROM scratch as runtime\nCOPY --from=build /a /\n",
                &["build", "runtime"],
            ),
            (
                "case-insensitive, names lowercased",
                "from alpine aS Build\n",
                &["build"],
            ),
            (
                "flags before the image",
                "FROM --platform=$BUILDPLATFORM golang:1.22 AS tools\n",
                &["tools"],
            ),
            ("indented", "  FROM\talpine   AS   base  \n", &["base"]),
            (
                "line continuation",
                "FROM \\\n  alpine \\\n  AS base\n",
                &["base"],
            ),
            (
                "a comment and a blank line inside a continuation",
                "FROM alpine \\\n# the name follows\n\n  AS base\n",
                &["base"],
            ),
            (
                "commented-out stages",
                "# FROM alpine AS old\nFROM alpine AS new\n   # FROM x AS older\n",
                &["new"],
            ),
            (
                "AS inside another instruction",
                "FROM scratch\nRUN echo FROM x AS y\nLABEL from=\"FROM a AS b\"\n",
                &[],
            ),
            (
                "the escape directive",
                "# escape=`\nFROM alpine `\n  AS base\nRUN dir c:\\\n",
                &["base"],
            ),
            (
                "a directive after an instruction is a comment",
                "FROM alpine AS a\n# escape=`\nFROM alpine `\n  AS b\n",
                &["a"],
            ),
            ("no trailing newline", "FROM alpine AS last", &["last"]),
            ("too many words", "FROM alpine AS base extra\n", &[]),
            (
                "CRLF line ends",
                "FROM alpine \\\r\n  AS base\r\n",
                &["base"],
            ),
        ];
        for (name, text, expected) in cases {
            assert_eq!(stage_names(text), *expected, "{name}");
        }
    }

    #[test]
    fn finds_the_line_of_a_step_as_buildkit_numbers_them() {
        // Steps as Docker 20.10's BuildKit names them for this file.
        let dockerfile = "FROM scratch AS base\nCOPY busybox /bin/sh\nENV GREETING=hi\n\n\
                          FROM base AS build\n# a comment\nRUN echo $GREETING && \\\n    echo two\n\
                          RUN [\"/bin/sh\", \"-c\", \"false\"]\n\
                          FROM alpine\nWORKDIR /src\nRUN make\n\
                          FROM alpine\nRUN make\n";
        // (step, line)
        let cases = [
            ("[base 1/1] COPY busybox /bin/sh", Some(2)),
            ("[build 1/2] RUN echo hi &&     echo two", Some(7)),
            ("[build 2/2] RUN [\"/bin/sh\", \"-c\", \"false\"]", Some(9)),
            // Unnamed stages that pull an image: the FROM is step 1.
            ("[3/3] RUN make", Some(12)),
            ("[2/2] RUN make", Some(14)),
            // Two unnamed stages fit `[1/2]`... only one has 2 steps.
            ("[1/2] FROM docker.io/library/alpine", Some(13)),
            ("[2/3] WORKDIR /src", Some(11)),
            // Not a step of this file, or not of the form.
            ("[build 3/3] RUN x", None),
            ("[base 1/1] RUN x", None),
            ("[internal] load build definition from Dockerfile", None),
            ("RUN make", None),
        ];
        for (step, line) in cases {
            assert_eq!(step_line(dockerfile, step), line, "{step}");
        }
        // Two unnamed stages alike: no single line.
        assert_eq!(
            step_line("FROM alpine\nRUN a\nFROM alpine\nRUN b\n", "[2/2] RUN b"),
            None
        );
    }
}

#[cfg(test)]
mod buildah_steps {
    use super::step_line;

    const TWO_STAGES: &str = "# syntax comment\nARG BASE=scratch\nFROM scratch AS build\nCOPY busybox /bin/busybox\nARG X=1\nRUN [\"/bin/busybox\",\"true\"]\n\nFROM scratch\nCOPY --from=build /one /one\nRUN make \\\n    all\n";

    #[test]
    fn buildah_steps_are_found_by_stage_and_instruction() {
        assert_eq!(
            step_line(TWO_STAGES, "[1/2] STEP 1/4: FROM scratch AS build"),
            Some(3)
        );
        assert_eq!(
            step_line(
                TWO_STAGES,
                "[1/2] STEP 4/4: RUN [\"/bin/busybox\",\"true\"]"
            ),
            Some(6)
        );
        assert_eq!(
            step_line(TWO_STAGES, "[2/2] STEP 3/3: RUN make all"),
            Some(10)
        );
        let one = "FROM scratch\nCOPY a /a\nRUN x\n";
        assert_eq!(step_line(one, "STEP 3/3: RUN x"), Some(3));
    }

    #[test]
    fn buildah_steps_that_do_not_fit_are_not_placed() {
        // Counts that do not match the Dockerfile: not told for sure.
        assert_eq!(step_line(TWO_STAGES, "[2/3] STEP 3/3: RUN make all"), None);
        assert_eq!(step_line(TWO_STAGES, "[2/2] STEP 3/5: RUN make all"), None);
        assert_eq!(
            step_line(TWO_STAGES, "STEP 1/4: FROM scratch AS build"),
            None
        );
        assert_eq!(step_line(TWO_STAGES, "[2/2] STEP 0/3: FROM scratch"), None);
    }
}
