//! `mab completions` and `mab man`, checked by the programs that read
//! them: bash loads the completion script, and groff renders the manual
//! page without a warning. No lab needed.

use std::process::Command;

fn mab_stdout(arguments: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_mab"))
        .args(arguments)
        .output()
        .expect("mab runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn bash_loads_the_completion_script() {
    let script = mab_stdout(&["completions", "bash"]);
    let output = Command::new("bash")
        .arg("-c")
        .arg("eval \"$SCRIPT\" && complete -p mab")
        .env("SCRIPT", script)
        .output()
        .expect("bash runs");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "complete -o bashdefault -o default -o nosort -F _mab mab"
    );
}

#[test]
fn groff_renders_the_manual_page_without_warnings() {
    let page = mab_stdout(&["man"]);
    let mut groff = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("groff runs");
    use std::io::Write;
    groff
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let output = groff.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "", "groff warned");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("mab-build(1)"), "{text}");
}
