//! Integration tests.
mod context_oracle;
