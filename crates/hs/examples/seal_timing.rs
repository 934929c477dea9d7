//! How long sealing and unlocking a master key takes with the default argon2id
//! parameters (64 MiB, 3 passes, 1 lane). Run it in release:
//!
//! ```text
//! cargo run --release -p rustbalance-hs --example seal_timing
//! ```

use rustbalance_hs::sealed::SealParams;
use rustbalance_hs::IdentityKey;
use std::time::Instant;

fn main() -> rustbalance_hs::Result<()> {
    let params = SealParams::default();
    let key = IdentityKey::generate(&mut rand::rng());
    let pass = b"timing passphrase";

    let start = Instant::now();
    let sealed = key.seal(pass, params, &mut rand::rng())?;
    println!("seal:   {:?} ({params:?})", start.elapsed());

    let mut best = None;
    for _ in 0..5 {
        let start = Instant::now();
        let back = IdentityKey::unseal(&sealed, pass)?;
        let took = start.elapsed();
        assert_eq!(back.address(), key.address());
        best = Some(best.map_or(took, |b: std::time::Duration| b.min(took)));
        println!("unseal: {took:?}");
    }
    if let Some(b) = best {
        println!("fastest unseal of 5: {b:?}");
    }
    Ok(())
}
