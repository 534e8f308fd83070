//! Integration tests: one binary, a module per area. Tests that need the
//! lab (`tests/lab/up`) fail when it is missing, unless `MAB_LAB=off`.

mod bad_input;
mod binaries;
mod build;
mod build_args;
mod context_oracle;
mod docker_build;
mod docs;
mod failover;
mod failure_metadata;
mod fault_hosts;
mod faults;
mod host_keys;
mod interrupt;
mod jump;
mod manual;
mod native;
mod partial;
mod plan_fallbacks;
mod platforms;
mod progress;
mod progress_schema;
mod readback;
mod registry_auth;
mod registry_faults;
mod resume;
mod runners;
mod secrets;
mod slots;
mod smoke;
mod ssh_config;
mod ssh_forward;
mod staging;
mod support;
mod tags;
mod terminal;
