//! A node's local inputs: the admin endpoint's request head (a real admin server on
//! loopback) and the configuration file.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustbalance_node::admin::{Admin, Control, RemoveFn, TokenAct, TokenFn};
use rustbalance_node::metrics::Metrics;
use rustbalance_node::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::time::timeout;

type Pending<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The admin cookie of the `admin_head` server (seeds carry it).
pub const ADMIN_COOKIE: &str = "fuzz-admin-cookie";

struct Harness {
    rt: Runtime,
    admin: Admin,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = crate::new_runtime();
        let token: TokenFn = Arc::new(
            |act: TokenAct| -> Pending<rustbalance_node::Result<String>> {
                Box::pin(async move { Ok(format!("rb-token {act:?}")) })
            },
        );
        let remove: RemoveFn =
            Arc::new(|who: String| -> Pending<rustbalance_node::Result<String>> {
                Box::pin(async move { Ok(format!("removed {who}")) })
            });
        let control = Control {
            cookie: Arc::new(ADMIN_COOKIE.to_string().into()),
            token: Some(token),
            remove: Some(remove),
        };
        let status = Arc::new(|| serde_json::json!({ "role": "follower" }));
        let admin = rt
            .block_on(Admin::start(
                ([127, 0, 0, 1], 0).into(),
                Metrics::new(),
                status,
                control,
            ))
            .expect("the admin server starts");
        Harness { rt, admin }
    })
}

/// One request to a real admin server: the input as everything the client sends before
/// closing its side. No panic in the server's tasks.
pub fn admin_head(data: &[u8]) {
    let h = harness();
    h.rt.block_on(async {
        let Ok(mut c) = TcpStream::connect(h.admin.addr()).await else {
            return;
        };
        let _ = c.write_all(data).await;
        let _ = c.shutdown().await;
        let mut answer = Vec::new();
        let _ = timeout(Duration::from_secs(6), c.read_to_end(&mut answer)).await;
    });
}

fn config_path() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        std::env::temp_dir().join(format!(
            "rustbalance-fuzz-config-{}.toml",
            std::process::id()
        ))
    })
}

/// `Config::load` on any file, then what the node reads from a loaded configuration (the
/// target URL, the master address when it is given as text). No panic.
pub fn config_file(data: &[u8]) {
    let path = config_path();
    if std::fs::write(path, data).is_err() {
        return;
    }
    if let Ok(cfg) = Config::load(path) {
        let _ = cfg.target_url();
        // With a key path set, `master_address` reads that file: the key file targets
        // cover its parsers.
        if cfg.service.master_key.is_none() {
            let _ = cfg.master_address();
        }
    }
}
