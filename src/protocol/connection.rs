//! The connection file written by the client: transport, address, ports and signing key.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// How the five sockets are addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Ipc,
}

/// Why a connection file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("cannot read connection file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid connection file {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "connection file {path}: unsupported transport {transport:?} (expected \"tcp\" or \"ipc\")"
    )]
    UnsupportedTransport { path: PathBuf, transport: String },
    #[error(
        "connection file {path}: unsupported signature_scheme {scheme:?} (expected \"hmac-sha256\")"
    )]
    UnsupportedSignatureScheme { path: PathBuf, scheme: String },
    #[error("connection file {path}: {field} must be a port between 1 and 65535, found {value}")]
    InvalidPort {
        path: PathBuf,
        field: &'static str,
        value: i64,
    },
    #[error("connection file {path}: empty ip")]
    EmptyIp { path: PathBuf },
}

#[derive(Deserialize)]
struct RawConnection {
    #[serde(default = "default_ip")]
    ip: String,
    #[serde(default = "default_transport")]
    transport: String,
    shell_port: i64,
    iopub_port: i64,
    stdin_port: i64,
    control_port: i64,
    hb_port: i64,
    #[serde(default)]
    key: String,
    #[serde(default = "default_scheme")]
    signature_scheme: String,
    #[serde(default)]
    kernel_name: String,
}

fn default_ip() -> String {
    "127.0.0.1".into()
}

fn default_transport() -> String {
    "tcp".into()
}

fn default_scheme() -> String {
    "hmac-sha256".into()
}

/// A validated connection file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionInfo {
    pub ip: String,
    pub transport: Transport,
    pub shell_port: u16,
    pub iopub_port: u16,
    pub stdin_port: u16,
    pub control_port: u16,
    pub hb_port: u16,
    pub key: String,
    pub signature_scheme: String,
    pub kernel_name: String,
}

impl ConnectionInfo {
    /// Reads and validates a connection file.
    pub fn from_file(path: &Path) -> Result<Self, ConnectionError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConnectionError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Parses and validates connection-file JSON; `path` is only used in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, ConnectionError> {
        let raw: RawConnection =
            serde_json::from_str(text).map_err(|source| ConnectionError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        let transport = match raw.transport.as_str() {
            "tcp" => Transport::Tcp,
            "ipc" => Transport::Ipc,
            other => {
                return Err(ConnectionError::UnsupportedTransport {
                    path: path.to_path_buf(),
                    transport: other.to_string(),
                })
            }
        };
        if raw.signature_scheme != "hmac-sha256" {
            return Err(ConnectionError::UnsupportedSignatureScheme {
                path: path.to_path_buf(),
                scheme: raw.signature_scheme,
            });
        }
        if raw.ip.is_empty() {
            return Err(ConnectionError::EmptyIp {
                path: path.to_path_buf(),
            });
        }
        let port = |field: &'static str, value: i64| {
            u16::try_from(value)
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| ConnectionError::InvalidPort {
                    path: path.to_path_buf(),
                    field,
                    value,
                })
        };
        Ok(ConnectionInfo {
            shell_port: port("shell_port", raw.shell_port)?,
            iopub_port: port("iopub_port", raw.iopub_port)?,
            stdin_port: port("stdin_port", raw.stdin_port)?,
            control_port: port("control_port", raw.control_port)?,
            hb_port: port("hb_port", raw.hb_port)?,
            ip: raw.ip,
            transport,
            key: raw.key,
            signature_scheme: raw.signature_scheme,
            kernel_name: raw.kernel_name,
        })
    }

    /// The ZeroMQ endpoint for `port`, as jupyter_client forms it: `tcp://ip:port` or
    /// `ipc://ip-port`.
    pub fn endpoint(&self, port: u16) -> String {
        match self.transport {
            Transport::Tcp if self.ip.contains(':') => format!("tcp://[{}]:{}", self.ip, port),
            Transport::Tcp => format!("tcp://{}:{}", self.ip, port),
            Transport::Ipc => format!("ipc://{}-{}", self.ip, port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "shell_port": 50001, "iopub_port": 50002, "stdin_port": 50003,
        "control_port": 50004, "hb_port": 50005, "ip": "127.0.0.1",
        "key": "a0436f6c-1916-498b-8eb9-e81ab9368e84", "transport": "tcp",
        "signature_scheme": "hmac-sha256", "kernel_name": "notebook-predictor"
    }"#;

    fn parse(text: &str) -> Result<ConnectionInfo, ConnectionError> {
        ConnectionInfo::from_json(text, Path::new("/tmp/kernel-1.json"))
    }

    #[test]
    fn parses_a_jupyter_client_connection_file() {
        let info = parse(GOOD).expect("valid");
        assert_eq!(info.transport, Transport::Tcp);
        assert_eq!(info.shell_port, 50001);
        assert_eq!(info.hb_port, 50005);
        assert_eq!(info.key, "a0436f6c-1916-498b-8eb9-e81ab9368e84");
        assert_eq!(info.endpoint(info.shell_port), "tcp://127.0.0.1:50001");
    }

    #[test]
    fn ipc_endpoints_join_path_and_port_with_a_dash() {
        let text = GOOD
            .replace("\"tcp\"", "\"ipc\"")
            .replace("127.0.0.1", "/tmp/kernel-ipc");
        let info = parse(&text).expect("valid");
        assert_eq!(info.transport, Transport::Ipc);
        assert_eq!(info.endpoint(50004), "ipc:///tmp/kernel-ipc-50004");
    }

    #[test]
    fn errors_name_the_path_and_the_reason() {
        let err = parse(&GOOD.replace("\"tcp\"", "\"udp\"")).unwrap_err();
        assert!(
            matches!(err, ConnectionError::UnsupportedTransport { ref transport, .. } if transport == "udp")
        );
        assert!(err.to_string().contains("/tmp/kernel-1.json"), "{err}");

        let err = parse(&GOOD.replace("hmac-sha256", "hmac-md5")).unwrap_err();
        assert!(matches!(
            err,
            ConnectionError::UnsupportedSignatureScheme { .. }
        ));

        let err = parse(&GOOD.replace("50003", "70000")).unwrap_err();
        assert!(matches!(
            err,
            ConnectionError::InvalidPort {
                field: "stdin_port",
                value: 70000,
                ..
            }
        ));
        let err = parse(&GOOD.replace("50005", "0")).unwrap_err();
        assert!(matches!(
            err,
            ConnectionError::InvalidPort {
                field: "hb_port",
                ..
            }
        ));

        let err = parse(&GOOD.replace("\"hb_port\": 50005,", "")).unwrap_err();
        assert!(matches!(err, ConnectionError::Parse { .. }));
        assert!(err.to_string().contains("hb_port"), "{err}");

        let err = parse("{ not json").unwrap_err();
        assert!(matches!(err, ConnectionError::Parse { .. }));

        let missing = Path::new("/nonexistent/dir/kernel-9.json");
        let err = ConnectionInfo::from_file(missing).unwrap_err();
        assert!(matches!(err, ConnectionError::Read { .. }));
        assert!(
            err.to_string().contains("/nonexistent/dir/kernel-9.json"),
            "{err}"
        );
    }

    #[test]
    fn defaults_match_jupyter_client() {
        let text = r#"{"shell_port":1,"iopub_port":2,"stdin_port":3,"control_port":4,"hb_port":5}"#;
        let info = parse(text).expect("valid");
        assert_eq!(info.ip, "127.0.0.1");
        assert_eq!(info.transport, Transport::Tcp);
        assert_eq!(info.key, "");
        assert_eq!(info.signature_scheme, "hmac-sha256");
    }
}
