//! Directory-authority keys: `tor-gencert` for the v3 identity and
//! certificate, `tor --list-fingerprint` for the relay identity.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::err::{file_err, Error, Result};
use crate::net::{DIR_PORT, OR_PORT};
use crate::state::{private_dir, Authority};

/// Runs a helper and returns its stdout; errors carry its output.
async fn run(
    program: &str,
    cmd: &mut tokio::process::Command,
    stdin: Option<&[u8]>,
) -> Result<String> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Error::Helper {
        program: program.to_string(),
        status: format!("cannot start: {e}"),
        output: String::new(),
    })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // The pipe is closed when `pipe` is dropped, so the helper sees EOF.
        pipe.write_all(input).await.map_err(|e| Error::Helper {
            program: program.to_string(),
            status: format!("cannot write its stdin: {e}"),
            output: String::new(),
        })?;
    }
    let out = child.wait_with_output().await.map_err(|e| Error::Helper {
        program: program.to_string(),
        status: format!("cannot wait for it: {e}"),
        output: String::new(),
    })?;
    if !out.status.success() {
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        return Err(Error::Helper {
            program: program.to_string(),
            status: out.status.to_string(),
            output: output.trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Generates the keys of one authority in `data_dir/keys` and returns its
/// identity. The (empty) passphrase goes through a pipe, never argv.
pub(crate) async fn generate_authority(
    tor: &Path,
    nick: &str,
    ip: Ipv4Addr,
    data_dir: &Path,
    empty_torrc: &Path,
) -> Result<Authority> {
    let keys = data_dir.join("keys");
    private_dir(data_dir)?;
    private_dir(&keys)?;
    run(
        "tor-gencert",
        tokio::process::Command::new("tor-gencert")
            .current_dir(&keys)
            .args(["--create-identity-key", "-m", "12", "-a"])
            .arg(format!("{ip}:{DIR_PORT}"))
            .args([
                "-i",
                "authority_identity_key",
                "-s",
                "authority_signing_key",
                "-c",
                "authority_certificate",
                "--passphrase-fd",
                "0",
            ]),
        Some(b"\n"),
    )
    .await?;
    let cert_path = keys.join("authority_certificate");
    let cert = std::fs::read_to_string(&cert_path).map_err(|e| file_err("read", &cert_path, e))?;
    let v3ident = cert
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint "))
        .map(|s| s.trim().to_string())
        .ok_or_else(|| file_err("parse", &cert_path, "no `fingerprint` line"))?;
    let out = run(
        "tor --list-fingerprint",
        tokio::process::Command::new(tor)
            .arg("--list-fingerprint")
            .arg("-f")
            .arg(empty_torrc)
            .arg("--DataDirectory")
            .arg(data_dir)
            .arg("--ORPort")
            .arg(format!("{ip}:{OR_PORT}"))
            .args(["--Nickname", nick, "--Log", "err stderr"]),
        None,
    )
    .await?;
    let fingerprint = parse_fingerprint(&out).ok_or_else(|| Error::Helper {
        program: "tor --list-fingerprint".into(),
        status: "no fingerprint in its output".into(),
        output: out.clone(),
    })?;
    Ok(Authority {
        nick: nick.to_string(),
        ip,
        v3ident,
        fingerprint,
    })
}

/// The 40-hex fingerprint from `NICK XXXX XXXX ...` (last line).
fn parse_fingerprint(out: &str) -> Option<String> {
    let line = out.lines().rev().find(|l| !l.trim().is_empty())?;
    let fpr: String = line.split_whitespace().skip(1).collect();
    (fpr.len() == 40 && fpr.chars().all(|c| c.is_ascii_hexdigit())).then_some(fpr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_line() {
        let out = "a1 0123 4567 89AB CDEF 0123 4567 89AB CDEF 0123 4567\n";
        assert_eq!(
            parse_fingerprint(out).as_deref(),
            Some("0123456789ABCDEF0123456789ABCDEF01234567")
        );
        assert_eq!(parse_fingerprint("a1 nothex\n"), None);
    }
}
