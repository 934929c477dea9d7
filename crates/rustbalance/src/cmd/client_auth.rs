//! `rustbalance client-auth add | remove | list`: the authorized clients of restricted
//! discovery (`service.authorized_clients_dir`), as tor `NAME.auth` files. The running
//! node notices a change within seconds and republishes.

use anyhow::{bail, Context, Result};
use rustbalance_hs::descriptor::{auth_line, parse_auth_file, ClientSecret};
use rustbalance_node::client_auth::{add_client, read_clients, remove_client};
use rustbalance_node::Config;
use std::path::{Path, PathBuf};

/// The config's `authorized_clients_dir`, and the master address.
fn clients_dir(config: &Path) -> Result<(PathBuf, rustbalance_hs::OnionAddress)> {
    let cfg = Config::load(config)?;
    let dir = cfg
        .service
        .authorized_clients_dir
        .clone()
        .with_context(|| {
            format!(
                "{} has no [service] authorized_clients_dir: add `authorized_clients_dir = \
             \"/var/lib/rustbalance/authorized_clients\"` (created by the first \
             `client-auth add`) to turn restricted discovery on",
                config.display()
            )
        })?;
    Ok((dir, cfg.master_address()?))
}

/// Authorize client `name`: with the client's own public key (`public_key_file`, tor's
/// `descriptor:x25519:KEY`), or with a new key pair whose secret half is printed once, as
/// the client's `ClientOnionAuthDir` line.
pub fn add(config: &Path, name: &str, public_key_file: Option<&Path>) -> Result<()> {
    let (dir, addr) = clients_dir(config)?;
    let (key, secret) = match public_key_file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            let key =
                parse_auth_file(&text).map_err(|p| anyhow::anyhow!("{}: {p}", f.display()))?;
            (key, None)
        }
        None => {
            let s = ClientSecret::generate(&mut rand::rng());
            (s.public(), Some(s))
        }
    };
    let file = add_client(&dir, name, &key)?;
    eprintln!(
        "authorized {name} ({}); publishing nodes pick it up within seconds. Copy {} to \
         every publisher-eligible node.",
        file.display(),
        file.display()
    );
    match secret {
        Some(s) => {
            eprintln!(
                "Give the client this line (a secret: only over a private channel). It goes \
                 into a file {name}.auth_private in the directory named by ClientOnionAuthDir \
                 in the client's torrc (Tor Browser asks for the key part when it first \
                 opens {addr}):"
            );
            println!("{}", s.auth_private_line(&addr).as_str());
        }
        None => eprintln!(
            "The client keeps its own secret key in its ClientOnionAuthDir as \
             `{}:descriptor:x25519:<its secret key>`.",
            addr.without_suffix()
        ),
    }
    Ok(())
}

/// Revoke client `name`.
pub fn remove(config: &Path, name: &str) -> Result<()> {
    let (dir, _) = clients_dir(config)?;
    let file = remove_client(&dir, name)?;
    let left = read_clients(&dir)?.len();
    eprintln!(
        "removed {} ({left} client(s) left); publishing nodes republish within seconds, and \
         the client cannot read descriptors made from then on. Remove the file on every \
         publisher-eligible node.",
        file.display()
    );
    if left == 0 {
        eprintln!("no client is left: nobody can reach the address until you add one");
    }
    Ok(())
}

/// List the authorized clients: name and public key.
pub fn list(config: &Path) -> Result<()> {
    let (dir, _) = clients_dir(config)?;
    if !dir.exists() {
        bail!(
            "{} does not exist yet: no client is authorized (nobody can reach the address)",
            dir.display()
        );
    }
    for c in read_clients(&dir)? {
        println!("{}\t{}", c.name, auth_line(&c.key));
    }
    Ok(())
}
