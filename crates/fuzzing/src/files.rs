//! Files a node reads back from its data directory or is handed by an operator: the saved
//! mesh peers (`mesh-peers.json`), the removals (`mesh-removed.json`), a join token, and
//! tor's pid file. (Key files and the configuration have targets of their own.)

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use rustbalance_node::join::{load_removals, load_saved_peers, JoinToken};
use rustbalance_tor::process::read_pid_file;

/// A private directory for the files of one input, made once per process.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("rustbalance-fuzz-files-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("a temporary directory");
        d
    })
}

/// The input is up to four files separated by NUL bytes: `mesh-peers.json`,
/// `mesh-removed.json`, a join token, tor's pid file; each is written to disk and read by
/// the node's own loader. Properties: no panic; a token that parses encodes back to text
/// that parses to the same path; every loaded removal can be described and asked whether
/// it is recent, whatever its time.
pub fn state_files(data: &[u8]) {
    let mut parts = data.split(|b| *b == 0);
    let mut next = |name: &str| {
        let path = dir().join(name);
        std::fs::write(&path, parts.next().unwrap_or_default()).expect("write a state file");
        path
    };
    let peers = next("mesh-peers.json");
    let removed = next("mesh-removed.json");
    let token = next("token");
    let pid = next("tor.pid");
    let _ = load_saved_peers(&peers);
    for r in load_removals(&removed).unwrap_or_default() {
        let _ = (r.describe(), r.is_recent(u64::MAX, Duration::MAX));
        let _ = r.is_recent(0, Duration::ZERO);
    }
    let text = String::from_utf8_lossy(&std::fs::read(&token).unwrap_or_default()).into_owned();
    if let Ok(t) = JoinToken::parse(&text) {
        let again = JoinToken::parse(&t.encode()).expect("an encoded token parses");
        assert_eq!(again.path_id(), t.path_id());
    }
    let _ = read_pid_file(&pid);
}
