//! Planning the core nodes of a lab and checking [`LabOptions`].

use std::net::Ipv4Addr;

use super::LabOptions;
use crate::err::{Error, Result};
use crate::net::{
    AddrBlock, Placement, CLIENT_HOST, CONTROL_PORT, DIR_PORT, FIRST_AUTHORITY_HOST,
    FIRST_RELAY_HOST, MAX_AUTHORITIES, MAX_RELAYS, OR_PORT, SOCKS_PORT,
};
use crate::state::{NodeSpec, Role};

/// Refuses option values the lab cannot build.
pub(super) fn check_options(opts: &LabOptions) -> Result<()> {
    if !(1..=MAX_AUTHORITIES).contains(&opts.authorities) {
        return Err(Error::Options(format!(
            "authorities must be 1..={MAX_AUTHORITIES}, not {}",
            opts.authorities
        )));
    }
    if !(2..=MAX_RELAYS).contains(&opts.relays) {
        return Err(Error::Options(format!(
            "relays must be 2..={MAX_RELAYS} (at least one guard and one exit), not {}",
            opts.relays
        )));
    }
    Ok(())
}

/// The core nodes of a lab: authorities `a1..`, guards `r1..`, exits, client `c1`.
pub(super) fn plan_nodes(
    block: AddrBlock,
    placement: &Placement,
    opts: &LabOptions,
) -> Vec<NodeSpec> {
    let node = |name: String, role: Role, ip: Ipv4Addr| NodeSpec {
        name,
        role,
        ip,
        control_port: CONTROL_PORT,
        or_port: (role != Role::Client).then_some(OR_PORT),
        dir_port: (role == Role::Authority).then_some(DIR_PORT),
        socks_port: (role == Role::Client).then_some(SOCKS_PORT),
    };
    let mut nodes = Vec::new();
    for i in 0..opts.authorities {
        let ip = placement.listen_ip(block, FIRST_AUTHORITY_HOST + i as u8);
        nodes.push(node(format!("a{}", i + 1), Role::Authority, ip));
    }
    let guards = opts.relays.div_ceil(2);
    for i in 0..opts.relays {
        let role = if i < guards { Role::Guard } else { Role::Exit };
        let ip = placement.listen_ip(block, FIRST_RELAY_HOST + i as u8);
        nodes.push(node(format!("r{}", i + 1), role, ip));
    }
    nodes.push(node(
        "c1".into(),
        Role::Client,
        placement.listen_ip(block, CLIENT_HOST),
    ));
    nodes
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn plan_has_roles_and_own_addresses() {
        let block = AddrBlock { b: 100, c: 7 };
        let nodes = plan_nodes(block, &Placement::HostLoopback, &LabOptions::default());
        assert_eq!(nodes.len(), 10);
        assert_eq!(nodes.iter().filter(|n| n.role == Role::Guard).count(), 3);
        assert_eq!(nodes.iter().filter(|n| n.role == Role::Exit).count(), 3);
        let mut ips: Vec<_> = nodes.iter().map(|n| n.ip).collect();
        ips.dedup();
        assert_eq!(ips.len(), 10);
        assert!(nodes.iter().all(|n| n.ip.is_loopback()));
        let ns = Placement::namespace().resolve(Path::new("/x")).unwrap();
        let nodes = plan_nodes(block, &ns, &LabOptions::default());
        assert!(nodes.iter().all(|n| block.is_net_ip(n.ip)));
    }

    #[test]
    fn options_are_checked() {
        let bad = LabOptions {
            relays: 1,
            ..Default::default()
        };
        assert!(check_options(&bad).is_err());
    }
}
