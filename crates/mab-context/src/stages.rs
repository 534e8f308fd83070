//! The build stages a Dockerfile names, read as BuildKit's Dockerfile
//! parser reads them, so that a wrong `target` is refused before any
//! engine is asked.

/// The names of the stages `text` declares (`FROM [--flag...] IMAGE AS
/// NAME`), lowercased, in order; unnamed stages are left out.
///
/// Read as BuildKit's parser (moby/buildkit `frontend/dockerfile/parser`)
/// reads a Dockerfile: instructions and `AS` are case-insensitive, stage
/// names too (`--target Build` selects `FROM x AS build`); a line whose
/// first non-blank character is `#` is a comment, also inside a
/// continuation; a line ending in the escape character (`\`, or `` ` ``
/// after an `# escape=`` ` `` parser directive at the top) continues on the
/// next line; blank lines inside a continuation are skipped. A stage is
/// selected by name only: `--target 0` is no stage (BuildKit's `--target`
/// takes no index).
pub fn stage_names(text: &str) -> Vec<String> {
    let escape = escape_character(text);
    let mut names = Vec::new();
    let mut instruction = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && !instruction.is_empty()) {
            continue;
        }
        let line = line.trim_end();
        if let Some(continued) = line.strip_suffix(escape) {
            instruction.push_str(continued);
            instruction.push(' ');
            continue;
        }
        instruction.push_str(line);
        names.extend(stage_name(&instruction));
        instruction.clear();
    }
    names.extend(stage_name(&instruction));
    names
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
}
