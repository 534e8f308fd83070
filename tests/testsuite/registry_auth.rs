//! Registry credentials in every form docker writes (`auths` entries with
//! `auth`, `username`/`password` or `identitytoken`, `credsStore`,
//! `credHelpers`, `DOCKER_AUTH_CONFIG`), against the lab's password registry
//! and its token registry (Bearer challenges, the token service's log): each
//! publishes with them, they reach the runner engines for the push and the
//! pulls, and they are never printed or written out.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;

use crate::support::{
    credential_helper_script, list_architectures, mab, mab_with_env, require_lab, sha256, ssh_lock,
    Home, Project,
};

fn project(repository: &str, socket: &str) -> Project {
    let project = Project::new();
    project
        .file("Dockerfile", "FROM scratch\nARG TARGETARCH\nCOPY Dockerfile /$TARGETARCH\n")
        .file(
            "mab.toml",
            &format!("[image]\nname = \"{repository}\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n"),
        )
        .file(
            "runners.toml",
            &format!(
                "[[runner]]\nname = \"arm\"\nhost = \"runner-a\"\nplatforms = [\"linux/arm64\"]\nengine = \"unix://{socket}\"\n\n\
                 [[runner]]\nname = \"here\"\nhost = \"local\"\nplatforms = [\"linux/amd64\"]\n"
            ),
        );
    project
}

/// The `auth` form ([`publishes_with`]); then a build whose base image is
/// that private list: without credentials its push is refused before
/// anything is built and the engines' pull fails; with them each runner
/// pulls it (the session's Auth service), and no secret is shown.
#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn credentials_reach_the_engines_and_are_never_shown() {
    let lab = require_lab!();
    let repository = publishes_with("AUTH_REGISTRY", "auth", "AUTH_PASSWORD", &|home, login| {
        docker_config(home, &login.auths(""));
        Vec::new()
    });
    let registry = lab.get("AUTH_REGISTRY");
    let derived = project(
        &format!(
            "{registry}/{}",
            lab.repository("derived").split_once('/').unwrap().1
        ),
        lab.get("RUNNER_A_ENGINE_SOCKET"),
    );
    derived.file(
        "Dockerfile",
        &format!("FROM {repository}:1.0\nCOPY Dockerfile /derived\n"),
    );
    let home = Home::new(lab);
    let _ssh = ssh_lock();
    let build = |arguments: &[&str]| mab(home.path(), derived.path(), arguments);

    let refused = build(&["build", "--progress", "plain"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("does not allow anonymous users to push"),
        "{refused:?}"
    );
    let anonymous = build(&["build", "--no-push", "--progress", "plain"]);
    assert_eq!(anonymous.code, 1, "{anonymous:?}");
    assert!(
        anonymous.stderr.to_lowercase().contains("unauthorized")
            || anonymous.stderr.contains("401"),
        "{anonymous:?}"
    );

    let login = Login {
        registry,
        user: lab.get("AUTH_USER"),
        secret: lab.get("AUTH_PASSWORD"),
    };
    docker_config(home.path(), &login.auths(""));
    let pulled = build(&["build", "--no-push", "--progress", "plain"]);
    assert_eq!(pulled.code, 0, "{pulled:?}");
    let encoded = base64(&format!("{}:{}", login.user, login.secret));
    for secret in [login.secret, encoded.as_str()] {
        assert!(!pulled.stderr.contains(secret), "{pulled:?}");
    }
}

/// base64 of `text`, as docker writes `auth` (standard alphabet, padded).
fn base64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Every file under `directory`, read as text (lossily), for grepping.
pub(crate) fn texts_under(directory: &Path) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(directory).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(texts_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    found
}

/// What a credential form holds for one run: the lab's user and a secret
/// (right or wrong) for `registry`.
struct Login<'a> {
    registry: &'a str,
    user: &'a str,
    secret: &'a str,
}

impl Login<'_> {
    /// A Docker configuration whose `auths` entry for the registry has
    /// `auth` (base64 of user:secret), with the JSON members `more` after.
    fn auths(&self, more: &str) -> String {
        let auth = base64(&format!("{}:{}", self.user, self.secret));
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}{more}}}"#,
            self.registry
        )
    }
}

/// How a test gives a credential form: writes the home's Docker
/// configuration (or helper) holding the login's secret, and returns the
/// variables mab runs with.
type Configure<'a> = &'a dyn Fn(&Path, &Login) -> Vec<(&'static str, String)>;

/// Publishes a two-platform list (this machine's engine and runner-a's)
/// with the credentials `configure` gives, after a wrong secret in the same form
/// was refused before anything was built (plain and `--progress json`);
/// checks the list with skopeo and reads it back with `mab inspect`. No
/// secret (right or wrong), nor its base64 forms, appears in any output,
/// the metadata file or the state directory. Returns the repository.
///
/// `registry` and `secret` name the lab's settings (`AUTH_REGISTRY`,
/// `AUTH_PASSWORD`…); `test` is the test's own repository name.
fn publishes_with(registry: &str, test: &str, secret: &str, configure: Configure) -> String {
    let lab = require_lab!();
    let registry = lab.get(registry);
    let secret = lab.get(secret);
    let user = lab.get("AUTH_USER");
    let repository = format!(
        "{registry}/{}",
        lab.repository(test).split_once('/').unwrap().1
    );
    let project = project(&repository, lab.get("RUNNER_A_ENGINE_SOCKET"));
    let home = Home::new(lab);
    let _ssh = ssh_lock();
    let run_with = |variables: &[(&'static str, String)], arguments: &[&str]| {
        let variables: Vec<(&str, Option<&str>)> = variables
            .iter()
            .map(|(name, value)| (*name, Some(value.as_str())))
            .collect();
        mab_with_env(home.path(), project.path(), arguments, &variables)
    };
    let mut shown = Vec::new();

    let wrong = format!("wrong-{secret}");
    let login = |secret| Login {
        registry,
        user,
        secret,
    };
    let variables = configure(home.path(), &login(&wrong));
    for progress in ["plain", "json"] {
        let refused = run_with(&variables, &["build", "--progress", progress]);
        assert_eq!(refused.code, 2, "{refused:?}");
        assert!(refused.stderr.contains("does not allow"), "{refused:?}");
        shown.push(format!("{}{}", refused.stdout, refused.stderr));
    }

    let variables = configure(home.path(), &login(secret));
    let metadata = project.path().join("metadata.json");
    let run = run_with(
        &variables,
        &[
            "build",
            "--progress",
            "json",
            "--tag",
            "1.0",
            "--metadata-file",
            metadata.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metadata).unwrap()).unwrap();
    let digest = written["digest"].as_str().unwrap().to_owned();
    shown.push(format!("{}{}{written}", run.stdout, run.stderr));

    let inspect = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw", "--creds"])
        .arg(format!(
            "{}:{}",
            lab.get("AUTH_USER"),
            lab.get("AUTH_PASSWORD")
        ))
        .arg(format!("docker://{repository}:1.0"))
        .output()
        .unwrap();
    assert!(inspect.status.success(), "{inspect:?}");
    assert_eq!(sha256(&inspect.stdout), digest);
    let mut architectures = list_architectures(&inspect.stdout);
    architectures.sort();
    assert_eq!(architectures, ["amd64", "arm64"]);

    let read = run_with(&variables, &["inspect", &format!("{repository}:1.0")]);
    assert_eq!(read.code, 0, "{read:?}");
    assert!(
        read.stdout.starts_with(&format!("{repository}@{digest}\n")),
        "{read:?}"
    );
    shown.push(format!("{}{}", read.stdout, read.stderr));

    let mut secrets = Vec::new();
    for secret in [secret, wrong.as_str()] {
        secrets.extend([
            secret.to_owned(),
            base64(secret),
            base64(&format!("{user}:{secret}")),
        ]);
    }
    let state = texts_under(&home.path().join(".local/state/mab"));
    assert!(!state.is_empty(), "the build left its state");
    for secret in &secrets {
        for text in &shown {
            assert!(!text.contains(secret.as_str()), "{secret} shown: {text}");
        }
        for (path, text) in &state {
            assert!(!text.contains(secret.as_str()), "{secret} in {path:?}");
        }
    }
    repository
}

/// Writes `config.json` in the home's `.docker`.
fn docker_config(home: &Path, text: &str) {
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    std::fs::write(home.join(".docker/config.json"), text).unwrap();
}

/// `PATH` with the home's `bin` first, where `docker-credential-mabtest`
/// is: it answers the login's user and secret for its registry, logs each
/// server it is asked for in `log`, and says it has nothing for
/// other servers (exit 1, as docker-credential-helpers do).
fn credential_helper(home: &Path, log: &Path, login: &Login) -> String {
    let Login {
        registry,
        user,
        secret,
    } = login;
    credential_helper_script(
        home,
        "mabtest",
        &format!(
            "[ \"$1\" = get ] || exit 2\nread -r server\necho \"$server\" >>'{log}'\n\
             if [ \"$server\" = '{registry}' ]; then\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}\\n' \"$server\"\n\
             else\necho 'credentials not found in native keychain'\nexit 1\nfi\n",
            log = log.display()
        ),
    )
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn username_and_password_entry() {
    publishes_with(
        "AUTH_REGISTRY",
        "creds-userpass",
        "AUTH_PASSWORD",
        &|home, login| {
            // Keyed as `docker login http://…` writes it.
            let Login {
                registry,
                user,
                secret,
            } = login;
            docker_config(
                home,
                &format!(
                    r#"{{"auths":{{"http://{registry}/v2/":{{"username":"{user}","password":"{secret}"}}}}}}"#
                ),
            );
            Vec::new()
        },
    );
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn creds_store() {
    let asked = tempfile::tempdir().unwrap();
    let log = asked.path().join("helper.log");
    let registry = publishes_with(
        "AUTH_REGISTRY",
        "creds-store",
        "AUTH_PASSWORD",
        &|home, login| {
            // The store wins over the registry's auths entry, which is
            // wrong.
            let wrong = Login {
                secret: &format!("wrong-{}", login.secret),
                ..*login
            };
            docker_config(home, &wrong.auths(r#","credsStore":"mabtest""#));
            vec![("PATH", credential_helper(home, &log, login))]
        },
    );
    // Asked for the registry alone: the wrong secret's two runs, the
    // build, and `mab inspect`.
    let registry = registry.split_once('/').unwrap().0;
    let asked = std::fs::read_to_string(&log).unwrap();
    assert!(asked.lines().all(|line| line == registry), "{asked}");
    assert!(asked.lines().count() >= 4, "{asked}");
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn cred_helpers() {
    publishes_with(
        "AUTH_REGISTRY",
        "creds-helpers",
        "AUTH_PASSWORD",
        &|home, login| {
            // The registry's helper wins over its auths entry, which is wrong.
            let wrong = Login {
                secret: &format!("wrong-{}", login.secret),
                ..*login
            };
            let helpers = format!(r#","credHelpers":{{"{}":"mabtest"}}"#, login.registry);
            docker_config(home, &wrong.auths(&helpers));
            vec![(
                "PATH",
                credential_helper(home, &home.join("helper.log"), login),
            )]
        },
    );
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn docker_auth_config_comes_first() {
    publishes_with(
        "AUTH_REGISTRY",
        "creds-variable",
        "AUTH_PASSWORD",
        &|home, login| {
            // The file's entry is wrong: the variable is asked first.
            let wrong = Login {
                secret: &format!("wrong-{}", login.secret),
                ..*login
            };
            docker_config(home, &wrong.auths(""));
            vec![("DOCKER_AUTH_CONFIG", login.auths(""))]
        },
    );
}

/// The token service's log lines about `repository` (its name in the
/// registry).
fn grants(lab: &crate::support::Lab, repository: &str) -> Vec<String> {
    let name = repository.split_once('/').unwrap().1;
    std::fs::read_to_string(lab.get("TOKEN_SERVER_LOG"))
        .unwrap()
        .lines()
        .filter(|line| line.contains(&format!("repository:{name}:")))
        .map(str::to_owned)
        .collect()
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn bearer_token_flow() {
    let lab = require_lab!();
    let repository = publishes_with(
        "TOKEN_REGISTRY",
        "creds-bearer",
        "AUTH_PASSWORD",
        &|home, login| {
            docker_config(home, &login.auths(""));
            Vec::new()
        },
    );
    let name = repository.split_once('/').unwrap().1;
    // The same layers published to a second repository: the engines mount
    // them from the first, with the token for both scopes.
    let registry = lab.get("TOKEN_REGISTRY");
    let second = format!(
        "{registry}/{}",
        lab.repository("creds-bearer-mount")
            .split_once('/')
            .unwrap()
            .1
    );
    let project = project(&second, lab.get("RUNNER_A_ENGINE_SOCKET"));
    let home = Home::new(lab);
    let login = Login {
        registry,
        user: lab.get("AUTH_USER"),
        secret: lab.get("AUTH_PASSWORD"),
    };
    docker_config(home.path(), &login.auths(""));
    let mounted = {
        let _ssh = ssh_lock();
        mab(
            home.path(),
            project.path(),
            &["build", "--progress", "plain"],
        )
    };
    assert_eq!(mounted.code, 0, "{mounted:?}");

    let grants = grants(lab, &repository);
    // mab's own check and publish ask `pull,push` (the engines ask
    // `push,pull`).
    // The service is the one of the registry's challenge (the token
    // service refuses another).
    let push = format!(
        "scope=repository:{name}:pull,push granted={name}:pull,push service=mab-lab-registry"
    );
    assert!(
        grants
            .iter()
            .any(|line| line.contains("GET grant=password user=mab") && line.ends_with(&push)),
        "{grants:#?}"
    );
    assert!(
        grants
            .iter()
            .any(|line| line.contains("grant=password") && line.contains("refused=")),
        "the wrong password was refused by the token service: {grants:#?}"
    );
    let second_name = second.split_once('/').unwrap().1;
    let mount = format!(
        "scope=repository:{second_name}:push,pull repository:{name}:pull granted={second_name}:push,pull {name}:pull"
    );
    assert!(
        grants.iter().any(|line| line.contains(&mount)),
        "{mount}: {grants:#?}"
    );
}

#[test]
#[cfg_attr(mab_lab_off, ignore = "needs the lab; MAB_LAB=off")]
fn identity_token() {
    let lab = require_lab!();
    let repository = publishes_with(
        "TOKEN_REGISTRY",
        "creds-identity",
        "REFRESH_TOKEN",
        &|home, login| {
            docker_config(
                home,
                &format!(
                    r#"{{"auths":{{"{}":{{"auth":"","identitytoken":"{}"}}}}}}"#,
                    login.registry, login.secret
                ),
            );
            Vec::new()
        },
    );
    let grants = grants(lab, &repository);
    let name = repository.split_once('/').unwrap().1;
    // mab's own check and publish (pull and push) and its reads (pull),
    // and the engines' pushes: each exchanged the identity token with the
    // refresh-token grant. (skopeo's check above used the password.)
    for (client, actions) in [
        ("mab", "pull,push"),
        ("mab", "pull"),
        ("docker", "push,pull"),
    ] {
        let asked = format!(
            "POST grant=refresh_token user=mab client_id={client} scope=repository:{name}:{actions} "
        );
        assert!(
            grants.iter().any(|line| line.contains(&asked)),
            "{asked}: {grants:#?}"
        );
    }
    // Each mab run exchanged the token once per scope and kept the access
    // token: the build's check and publish share one `pull,push` grant,
    // the build's reads and `mab inspect` one `pull` grant each.
    for (actions, runs) in [("pull,push", 1), ("pull", 2)] {
        let granted = format!(
            "POST grant=refresh_token user=mab client_id=mab scope=repository:{name}:{actions} granted="
        );
        let count = grants.iter().filter(|line| line.contains(&granted)).count();
        assert_eq!(count, runs, "{granted}: {grants:#?}");
    }
    assert!(
        grants.iter().any(
            |line| line.contains("POST grant=refresh_token user=- client_id=mab")
                && line.contains("refused=")
        ),
        "the wrong identity token was refused: {grants:#?}"
    );

    // A build on that private list: the engines' BuildKit asks the
    // session's Auth service, which answers with the identity token; the
    // token service sees BuildKit's refresh-token grant for the pull.
    let registry = lab.get("TOKEN_REGISTRY");
    let derived = project(
        &format!(
            "{registry}/{}",
            lab.repository("creds-identity-derived")
                .split_once('/')
                .unwrap()
                .1
        ),
        lab.get("RUNNER_A_ENGINE_SOCKET"),
    );
    derived.file(
        "Dockerfile",
        &format!("FROM {repository}:1.0\nCOPY Dockerfile /derived\n"),
    );
    let home = Home::new(lab);
    docker_config(
        home.path(),
        &format!(
            r#"{{"auths":{{"{registry}":{{"auth":"","identitytoken":"{}"}}}}}}"#,
            lab.get("REFRESH_TOKEN")
        ),
    );
    let pulled = {
        let _ssh = ssh_lock();
        mab(
            home.path(),
            derived.path(),
            &["build", "--no-push", "--progress", "plain"],
        )
    };
    assert_eq!(pulled.code, 0, "{pulled:?}");
    assert!(
        !pulled.stderr.contains(lab.get("REFRESH_TOKEN")),
        "{pulled:?}"
    );
    let pulls = self::grants(lab, &repository);
    let pull = format!("grant=refresh_token user=mab client_id=buildkit-client scope=repository:{name}:pull granted={name}:pull");
    assert!(
        pulls.iter().any(|line| line.contains(&pull)),
        "{pull}: {pulls:#?}"
    );
}
