//! Build secrets, served to BuildKit through the build's session: the
//! `moby.buildkit.secrets.v1.Secrets/GetSecret` method, which a `RUN
//! --mount=type=secret,id=ID` step calls on the client, as with the docker
//! CLI and buildx.
//!
//! The values are read once by the caller and kept in memory; nothing here
//! logs or prints them (their `Debug` is `[redacted]`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server::Secrets as SecretsApi;
use bollard_buildkit_proto::moby::buildkit::secrets::v1::{GetSecretRequest, GetSecretResponse};
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

/// A secret's value: bytes that never appear in output (`Debug` prints
/// `[redacted]`; there is no `Display`), overwritten with zeros when
/// dropped (the `zeroize` crate). The copy handed to each `GetSecret`
/// answer is gRPC's and is not.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// A value of at most BuildKit's `MaxSecretSize` (500 KiB, checked by
    /// the caller that read it), sent as it is.
    pub fn new(bytes: Vec<u8>) -> SecretValue {
        SecretValue(Zeroizing::new(bytes))
    }

    /// The value.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("[redacted]")
    }
}

/// The secrets of a build, by id; cheap to clone (shared by every job).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Secrets(Arc<BTreeMap<String, SecretValue>>);

impl Secrets {
    /// The values `RUN --mount=type=secret,id=ID` steps may read, by id;
    /// any other id answers `NotFound`.
    pub fn new(values: BTreeMap<String, SecretValue>) -> Secrets {
        Secrets(Arc::new(values))
    }

    /// Each id and its value, by id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &SecretValue)> {
        self.0.iter()
    }
}

/// The session's Secrets service.
#[derive(Clone, Debug)]
pub(crate) struct SecretsService {
    pub(crate) secrets: Secrets,
}

#[tonic::async_trait]
impl SecretsApi for SecretsService {
    /// The value of the secret the request names. An id the build was not
    /// given answers `NotFound`, as BuildKit's own store does, so that a
    /// mount with `required=false` is left out and a required one fails
    /// naming the id.
    async fn get_secret(
        &self,
        request: Request<GetSecretRequest>,
    ) -> Result<Response<GetSecretResponse>, Status> {
        let id = request.into_inner().id;
        match self.secrets.0.get(&id) {
            Some(value) => {
                tracing::trace!("the engine read the secret {id}");
                Ok(Response::new(GetSecretResponse {
                    data: value.0.to_vec(),
                }))
            }
            None => {
                tracing::trace!(
                    "the engine asked for the secret {id}, which the build was not given"
                );
                Err(Status::not_found(format!("secret {id} not found")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_the_value_or_not_found() {
        let service = SecretsService {
            secrets: Secrets::new(BTreeMap::from([(
                "tok".to_owned(),
                SecretValue::new(b"s3cret".to_vec()),
            )])),
        };
        let ask = |id: &str| {
            Request::new(GetSecretRequest {
                id: id.to_owned(),
                ..Default::default()
            })
        };
        let found = service.get_secret(ask("tok")).await.unwrap();
        assert_eq!(found.into_inner().data, b"s3cret");
        let missing = service.get_secret(ask("other")).await.unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound);
        let shown = format!("{:?}", service.secrets);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }
}
