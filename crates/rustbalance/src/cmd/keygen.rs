//! `rustbalance keygen`.

use anyhow::{bail, Result};
use rustbalance_hs::keys::SECRET_KEY_FILE;
use rustbalance_hs::IdentityKey;
use rustbalance_node::keystore::KeyFiles;
use std::path::Path;

pub fn run(out: &Path) -> Result<()> {
    if out.join(SECRET_KEY_FILE).exists() {
        bail!(
            "{} already exists; refusing to overwrite a key (move it away first)",
            out.join(SECRET_KEY_FILE).display()
        );
    }
    let key = IdentityKey::generate(&mut rand::rng());
    key.write_tor_dir(out)?;
    println!("{}", key.address());
    Ok(())
}
