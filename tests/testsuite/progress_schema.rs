//! `--progress json` line by line against docs/progress.md: a real lab
//! build (runner `here` on the local engine, runner `arm` over SSH) whose
//! every stderr line must parse, carry `"schema": 1`, name an event the
//! docs list, hold exactly the fields the docs give that event with their
//! JSON types, and come in the documented order.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use crate::support::{mab, require_lab, sha256, skopeo_raw, ssh_lock, Home, Project};

/// The JSON type a field must have.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Text,
    /// A string or `null`.
    TextOrNull,
    Bool,
    /// A whole number, not negative.
    Count,
    /// Any number (seconds).
    Number,
    /// `sha256:` and 64 hex digits.
    Digest,
    /// A digest or `null`.
    DigestOrNull,
    /// `os/arch[/variant]`.
    Platform,
    /// A list of strings.
    Texts,
    /// A list of platforms.
    Platforms,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// `plan`'s `jobs`: objects of `platform`, `runner`, `emulated`, `reason`.
    Jobs,
    /// `retry`'s `target`.
    Target,
    /// `result`'s `error`: `message`, `hints`, `details`.
    Error,
}

const PHASES: &[&str] = &["build", "push", "verify", "check", "test"];

/// docs/progress.md's table: each event's fields, `true` where optional.
fn documented() -> HashMap<&'static str, Vec<(&'static str, Kind, bool)>> {
    use Kind::*;
    let at = |rest: Vec<(&'static str, Kind, bool)>| {
        let mut fields = vec![("platform", Platform, false), ("runner", Text, false)];
        fields.extend(rest);
        fields
    };
    HashMap::from([
        (
            "plan",
            vec![
                ("image", Text, false),
                ("context_files", Count, false),
                ("jobs", Jobs, false),
            ],
        ),
        (
            "waiting",
            at(vec![
                ("jobs", Count, false),
                ("seconds", Count, false),
                ("holding", Platforms, false),
            ]),
        ),
        ("job_started", at(vec![("emulated", Bool, false)])),
        ("phase_started", at(vec![("phase", OneOf(PHASES), false)])),
        (
            "phase_finished",
            at(vec![
                ("phase", OneOf(PHASES), false),
                ("seconds", Number, false),
                ("bytes", Count, true),
            ]),
        ),
        (
            "step",
            at(vec![("step", Text, false), ("cached", Bool, false)]),
        ),
        ("cache_source", at(vec![("source", TextOrNull, false)])),
        (
            "context_sent",
            at(vec![("bytes", Count, false), ("total", Count, false)]),
        ),
        ("log", at(vec![("line", Text, false)])),
        ("pushed", at(vec![("digest", Digest, false)])),
        ("job_finished", at(vec![("seconds", Number, false)])),
        (
            "job_failed",
            at(vec![
                (
                    "kind",
                    OneOf(&["build", "runner", "registry", "binaries", "test", "usage"]),
                    false,
                ),
                ("message", Text, false),
            ]),
        ),
        (
            "retry",
            vec![
                ("target", Target, false),
                ("request", Text, false),
                ("attempt", Count, false),
                ("tries", Count, false),
                ("delay_ms", Count, false),
                ("error", Text, false),
            ],
        ),
        (
            "moved",
            vec![
                ("platform", Platform, false),
                ("from", Text, false),
                ("to", Text, false),
                ("emulated", Bool, false),
                ("reason", Text, false),
            ],
        ),
        (
            "reused",
            vec![
                ("platform", Platform, false),
                ("runner", TextOrNull, false),
                ("digest", Digest, false),
            ],
        ),
        (
            "published",
            vec![
                ("image", Text, false),
                ("digest", Digest, false),
                ("tags", Texts, false),
                ("missing", Platforms, false),
            ],
        ),
        (
            "read_back",
            vec![
                ("image", Text, false),
                ("digest", Digest, false),
                ("tags", Texts, false),
                ("platforms", Texts, false),
            ],
        ),
        (
            "staging_tags_left",
            vec![
                ("image", Text, false),
                ("tags", Texts, false),
                ("reason", OneOf(&["not_deleted", "kept_for_resume"]), false),
            ],
        ),
        ("warning", vec![("message", Text, false)]),
        (
            "diagnostic",
            vec![
                ("level", OneOf(&["info", "debug", "trace"]), false),
                ("message", Text, false),
            ],
        ),
        (
            "result",
            vec![
                ("exit_code", OneOf(&[]), false),
                ("digest", DigestOrNull, false),
                ("no_push", Bool, false),
                ("error", Error, true),
            ],
        ),
    ])
}

fn is_digest(value: &Value) -> bool {
    value.as_str().is_some_and(|text| {
        text.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64
                && hex
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        })
    })
}

fn is_platform(value: &Value) -> bool {
    value.as_str().is_some_and(|text| {
        let parts: Vec<&str> = text.split('/').collect();
        (2..=3).contains(&parts.len()) && parts.iter().all(|part| !part.is_empty())
    })
}

fn texts(value: &Value, each: fn(&Value) -> bool) -> bool {
    value.as_array().is_some_and(|items| items.iter().all(each))
}

/// Whether `value` is of `kind`.
fn fits(kind: Kind, value: &Value) -> bool {
    match kind {
        Kind::Text => value.is_string(),
        Kind::TextOrNull => value.is_string() || value.is_null(),
        Kind::Bool => value.is_boolean(),
        Kind::Count => value.is_u64(),
        Kind::Number => value.as_f64().is_some_and(|number| number >= 0.0),
        Kind::Digest => is_digest(value),
        Kind::DigestOrNull => value.is_null() || is_digest(value),
        Kind::Platform => is_platform(value),
        Kind::Texts => texts(value, Value::is_string),
        Kind::Platforms => texts(value, is_platform),
        // `exit_code`: the documented codes.
        Kind::OneOf([]) => [0, 1, 2, 130, 143].iter().any(|code| value == code),
        Kind::OneOf(names) => value.as_str().is_some_and(|name| names.contains(&name)),
        Kind::Jobs => value.as_array().is_some_and(|jobs| {
            jobs.iter().all(|job| {
                keys(job) == ["emulated", "platform", "reason", "runner"]
                    && is_platform(&job["platform"])
                    && job["runner"].is_string()
                    && job["emulated"].is_boolean()
                    && job["reason"].is_string()
            })
        }),
        Kind::Target => match value["kind"].as_str() {
            Some("registry") => {
                keys(value) == ["kind", "registry"] && value["registry"].is_string()
            }
            Some("ssh" | "engine") => {
                keys(value) == ["kind", "runner"] && value["runner"].is_string()
            }
            _ => false,
        },
        Kind::Error => {
            keys(value) == ["details", "hints", "message"]
                && value["message"].is_string()
                && texts(&value["hints"], Value::is_string)
                && texts(&value["details"], Value::is_string)
        }
    }
}

/// The names of an object's fields, sorted.
fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .map(|object| object.keys().map(String::as_str).collect::<BTreeSet<_>>())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Checks one line against the documented events: the problems found.
fn check_line(line: &str, events: &HashMap<&str, Vec<(&str, Kind, bool)>>) -> Vec<String> {
    let value: Value = match serde_json::from_str(line) {
        Ok(value) => value,
        Err(error) => return vec![format!("not JSON ({error})")],
    };
    let Some(object) = value.as_object() else {
        return vec!["not an object".to_owned()];
    };
    let mut problems = Vec::new();
    // Read from the text: serde_json's objects do not keep the order.
    if !line.starts_with(r#"{"schema":1,"#) {
        problems.push("`schema` 1 is not first".to_owned());
    }
    let Some(fields) = value["event"].as_str().and_then(|name| events.get(name)) else {
        return vec![format!("unknown event {}", value["event"])];
    };
    for (name, kind, optional) in fields {
        match object.get(*name) {
            None if *optional => {}
            None => problems.push(format!("no `{name}`")),
            Some(field) if !fits(*kind, field) => {
                problems.push(format!("`{name}` is not {kind:?}: {field}"));
            }
            Some(_) => {}
        }
    }
    for name in object.keys() {
        let known = ["schema", "event"].contains(&name.as_str())
            || fields.iter().any(|(field, ..)| field == name);
        if !known {
            problems.push(format!("`{name}` is not documented"));
        }
    }
    problems
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn every_json_line_of_a_lab_build_is_a_documented_event_in_the_documented_order() {
    let lab = require_lab!();
    let repository = lab.repository("progress-schema");
    let project = Project::new();
    project
        .with_busybox(lab, &["amd64", "arm64"])
        .file(
            "Dockerfile",
            "FROM scratch\nARG TARGETARCH\nCOPY busybox/${TARGETARCH} /bin/busybox\nCOPY stamp.txt /\n\
             RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox echo said-$TARGETARCH\"]\n",
        )
        .file("stamp.txt", &format!("{:?}\n", std::time::SystemTime::now()))
        .two_platforms(lab, &repository);
    let home = Home::new(lab);
    let _ssh = ssh_lock();
    let run = mab(
        home.path(),
        project.path(),
        &["build", "--progress", "json", "--tag", "s1"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let digest = sha256(&skopeo_raw(&format!("{repository}:s1")));
    assert_eq!(run.stdout, format!("{repository}@{digest}\n"));

    let events = documented();
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(lines.len() > 10, "{run:?}");
    for (number, line) in lines.iter().enumerate() {
        let problems = check_line(line, &events);
        assert!(
            problems.is_empty(),
            "line {}: {line}: {problems:?}",
            number + 1
        );
    }

    // The order.
    let parsed: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let name = |event: &Value| event["event"].as_str().unwrap().to_owned();
    assert_eq!(name(&parsed[0]), "plan", "the plan first");
    assert_eq!(name(parsed.last().unwrap()), "result", "the result last");
    assert_eq!(
        parsed
            .iter()
            .filter(|event| name(event) == "result")
            .count(),
        1
    );
    assert_eq!(parsed.last().unwrap()["digest"], digest.as_str());
    let named: BTreeSet<String> = parsed.iter().map(name).collect();
    for seen in [
        "job_started",
        "step",
        "log",
        "pushed",
        "published",
        "read_back",
    ] {
        assert!(named.contains(seen), "no {seen}: {run:?}");
    }
    let position = |wanted: &str| {
        parsed
            .iter()
            .position(|event| name(event) == wanted)
            .unwrap()
    };
    assert!(position("published") < position("read_back"));
    for job in parsed[0]["jobs"].as_array().unwrap() {
        let mine: Vec<&Value> = parsed
            .iter()
            .filter(|event| {
                event["platform"] == job["platform"] && event["runner"] == job["runner"]
            })
            .collect();
        // job_started before everything else of the job, job_finished after.
        assert_eq!(name(mine[0]), "job_started", "{job}: {run:?}");
        assert_eq!(mine[0]["emulated"], job["emulated"]);
        assert_eq!(name(mine.last().unwrap()), "job_finished", "{job}: {run:?}");
        assert_eq!(
            mine.iter()
                .filter(|event| name(event) == "job_started")
                .count(),
            1
        );
        // Each phase starts before it finishes, once, in the phases' order.
        let mut open: Option<String> = None;
        let mut done: Vec<String> = Vec::new();
        for event in &mine {
            let phase = event["phase"].as_str().map(str::to_owned);
            match name(event).as_str() {
                "phase_started" => {
                    assert_eq!(open, None, "{job}: phases overlap: {run:?}");
                    open = phase;
                }
                "phase_finished" => {
                    assert_eq!(open, phase, "{job}: finished before started: {run:?}");
                    done.push(open.take().unwrap());
                }
                "step" | "log" | "context_sent" | "cache_source" => {
                    assert_eq!(open.as_deref(), Some("build"), "{event}");
                }
                "pushed" => assert_eq!(done.last().map(String::as_str), Some("push"), "{event}"),
                _ => {}
            }
        }
        assert_eq!(done, ["build", "push", "verify", "check"], "{job}");
        // The context's files are new to the engine (stamp.txt): some
        // bytes go, and the bars hear of them.
        assert!(
            mine.iter()
                .any(|event| name(event) == "context_sent" && event["bytes"].as_u64() > Some(0)),
            "{job}: no context_sent: {run:?}"
        );
        let architecture = job["platform"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        assert!(
            mine.iter().any(|event| event["line"]
                .as_str()
                .is_some_and(|line| line.ends_with(&format!("said-{architecture}")))),
            "the RUN step's output as a log line: {run:?}"
        );
    }
}

/// The check itself finds what is wrong: a field missing, of another
/// type, not documented, an unknown event, a line that is not JSON.
#[test]
fn the_line_check_finds_each_kind_of_mistake() {
    let events = documented();
    let good = r#"{"schema":1,"event":"pushed","platform":"linux/arm64","runner":"pi","digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}"#;
    assert_eq!(check_line(good, &events), Vec::<String>::new());
    for (bad, problem) in [
        (
            r#"{"schema":1,"event":"pushed","platform":"linux/arm64","runner":"pi"}"#,
            "no `digest`",
        ),
        (
            r#"{"schema":1,"event":"pushed","platform":"linux/arm64","runner":"pi","digest":"ab"}"#,
            "`digest` is not Digest",
        ),
        (
            r#"{"schema":1,"event":"log","platform":"linux/arm64","runner":"pi","line":"x","extra":1}"#,
            "`extra` is not documented",
        ),
        (r#"{"schema":1,"event":"nope"}"#, "unknown event"),
        (
            r#"{"event":"warning","schema":1,"message":"m"}"#,
            "`schema` 1 is not first",
        ),
        ("plain text", "not JSON"),
    ] {
        let problems = check_line(bad, &events);
        assert!(
            problems.iter().any(|found| found.starts_with(problem)),
            "{bad}: {problems:?}"
        );
    }
}
