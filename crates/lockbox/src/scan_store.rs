//! Where `lockbox scan --fix` moves the values it finds: lockbox secrets, created through
//! the daemon like `lockbox secret create`. The runtime is made on the first call, so a
//! dry run or a plain scan never needs the daemon.
use lockbox_proto::{IdResponse, Spec};

use crate::client::{Client, enc};

pub(crate) struct DaemonStore {
    client: Client,
    runtime: Option<tokio::runtime::Runtime>,
}

impl DaemonStore {
    pub(crate) fn new(client: Client) -> Self {
        DaemonStore {
            client,
            runtime: None,
        }
    }

    fn runtime(&mut self) -> Result<&tokio::runtime::Runtime, String> {
        if self.runtime.is_none() {
            self.runtime = Some(crate::runtime().map_err(|e| e.to_string())?);
        }
        self.runtime
            .as_ref()
            .ok_or_else(|| "no async runtime".to_string())
    }
}

impl lockbox_scan::SecretStore for DaemonStore {
    fn create(&mut self, name: &str, value: &[u8]) -> Result<(), String> {
        let spec = Spec {
            name: name.to_string(),
            labels: [("lockbox.created-by".to_string(), "scan --fix".to_string())].into(),
            data: Some(crate::b64(value).to_string()),
            ..Spec::default()
        };
        let client = self.client.clone();
        self.runtime()?
            .block_on(client.post::<IdResponse>("/v1/secrets/create", &spec))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn remove(&mut self, name: &str) -> Result<(), String> {
        let client = self.client.clone();
        self.runtime()?
            .block_on(client.delete(&format!("/v1/secrets/{}", enc(name))))
            .map_err(|e| e.to_string())
    }
}
