//! Sets `cfg(mab_lab_off)` when the integration tests are built with
//! `MAB_LAB=off` outside CI (`CI` is not `true`), so that the tests needing
//! the lab are reported as ignored, by name, instead of run. In CI the lab
//! tests always run, and fail when the lab is missing.

fn main() {
    println!("cargo::rerun-if-env-changed=MAB_LAB");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rustc-check-cfg=cfg(mab_lab_off)");
    let lab_off = std::env::var("MAB_LAB").is_ok_and(|value| value == "off");
    let in_ci = std::env::var("CI").is_ok_and(|value| value == "true");
    if lab_off && !in_ci {
        println!("cargo::rustc-cfg=mab_lab_off");
    }
}
