//! `mab plan` on the real lab with an unreachable runner listed first:
//! each platform moved off it, as `mab build` says (the same warning
//! lines, compared with a `mab build --no-push` of the same project), and
//! its fallbacks in order; with `--no-fallback` (and `fallback = false`)
//! the same error as `mab build --no-fallback`.

use crate::support::{free_port, mab, require_lab, ssh_lock, Home, Project, Run};

/// stderr's lines that start with `prefix`.
fn lines<'a>(run: &'a Run, prefix: &str) -> Vec<&'a str> {
    run.stderr
        .lines()
        .filter(|line| line.starts_with(prefix))
        .collect()
}

/// stderr from the `error: ` line on.
fn report(run: &Run) -> String {
    let at = run
        .stderr
        .find("error: ")
        .unwrap_or_else(|| panic!("no error in {run:?}"));
    run.stderr[at..].to_owned()
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn plan_shows_the_moves_and_fallbacks_the_build_makes() {
    let lab = require_lab!();
    let home = Home::new(lab);
    let _ssh = ssh_lock();
    let port = free_port();
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nCOPY content.txt /\n")
        .file("content.txt", "plan\n")
        .file(
            "mab.toml",
            &format!(
                "[image]\nname = \"{}\"\nplatforms = [\"linux/amd64\", \"linux/386\"]\n",
                lab.repository("plan-moves")
            ),
        )
        .file(
            "runners.toml",
            &format!(
                "[[runner]]\nname = \"down\"\nhost = \"root@127.0.0.1:{port}\"\nplatforms = [\"linux/amd64\", \"linux/386\"]\n\n\
                 [[runner]]\nname = \"b\"\nhost = \"runner-b\"\njobs = 4\nplatforms = [\"linux/amd64\", \"linux/386\"]\nengine = \"unix://{b}\"\n\n\
                 [[runner]]\nname = \"a\"\nhost = \"runner-a\"\njobs = 4\nplatforms = [\"linux/amd64\", \"linux/386\"]\nengine = \"unix://{a}\"\n",
                b = lab.get("RUNNER_B_ENGINE_SOCKET"),
                a = lab.get("RUNNER_A_ENGINE_SOCKET"),
            ),
        );
    let plan = |arguments: &[&str]| {
        let mut all = vec!["plan", "--runners", "runners.toml"];
        all.extend_from_slice(arguments);
        mab(home.path(), project.path(), &all)
    };
    let build = |arguments: &[&str]| {
        let mut all = vec![
            "build",
            "--progress",
            "plain",
            "--runners",
            "runners.toml",
            "--no-push",
            "--tag",
            "t",
        ];
        all.extend_from_slice(arguments);
        mab(home.path(), project.path(), &all)
    };

    let json = plan(&["--format", "json"]);
    assert_eq!(json.code, 0, "{json:?}");
    let json = json.json();
    assert_eq!(json["fallback"], true, "{json:#}");
    let reason = json["platforms"][0]["moved_from"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("{json:#}"))
        .to_owned();
    assert!(
        reason.contains(&format!("127.0.0.1:{port}")) && reason.contains("refused"),
        "{reason}"
    );
    // linux/386 goes to `a`, which has more free job slots once linux/amd64
    // took one of `b`'s.
    for (entry, (platform, runner, fallback)) in json["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .zip([("linux/amd64", "b", "a"), ("linux/386", "a", "b")])
    {
        assert_eq!(entry["platform"], platform, "{json:#}");
        assert_eq!(entry["runner"], runner, "{json:#}");
        assert_eq!(
            entry["moved_from"],
            serde_json::json!({ "runner": "down", "reason": reason }),
            "{json:#}"
        );
        assert_eq!(
            entry["fallbacks"],
            serde_json::json!([{ "runner": fallback, "emulated": false }]),
            "{json:#}"
        );
    }

    let human = plan(&[]);
    assert_eq!(human.code, 0, "{human:?}");
    let amd64: Vec<&str> = human.stdout.lines().take(4).collect();
    assert_eq!(
        amd64,
        [
            "linux/amd64      -> b: native linux/amd64 engine".to_owned(),
            format!("                    moved from runner `down`, which is unreachable: {reason}"),
            "                    fallbacks: a (native)".to_owned(),
            format!("                    not down: unreachable: {reason}"),
        ],
        "{human:?}"
    );
    // The moves are said as the build says them: the same warning lines.
    let built = build(&[]);
    assert_eq!(built.code, 0, "{built:?}");
    // (Retries of the refused logins are warnings too.)
    let moves = lines(&built, "warning: linux/");
    assert_eq!(
        moves,
        [
            format!(
                "warning: linux/amd64 moved from runner `down` to runner `b` (native): {reason}"
            ),
            format!("warning: linux/386 moved from runner `down` to runner `a` (native): {reason}"),
        ],
        "{built:?}"
    );
    assert_eq!(lines(&human, "warning: linux/"), moves, "{human:?}");

    // --no-fallback: the error the build gives, and no plan.
    let refused = plan(&["--no-fallback"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert_eq!(refused.stdout, "", "{refused:?}");
    let built = build(&["--no-fallback"]);
    assert_eq!(built.code, 1, "{built:?}");
    assert_eq!(report(&refused), report(&built));
    assert!(
        report(&refused).starts_with(
            "error: build failed for linux/amd64 (runner down), linux/386 (runner down); nothing was published"
        ),
        "{refused:?}"
    );

    // `fallback = false` under [image] plans as --no-fallback does.
    let manifest = std::fs::read_to_string(project.path().join("mab.toml")).unwrap();
    project.file("mab.toml", &format!("{manifest}fallback = false\n"));
    let keyed = plan(&[]);
    assert_eq!(keyed.code, 1, "{keyed:?}");
    assert_eq!(keyed.stdout, "", "{keyed:?}");
    assert_eq!(report(&keyed), report(&refused));
}
