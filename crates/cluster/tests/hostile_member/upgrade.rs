//! Migration of an existing cluster to signed gossip, node by node (issue 13).

use super::*;

/// Migration (issue 13): a cluster of nodes from before identities (unsigned gossip: a
/// version without signatures, or this one with `gossip_signatures = "off"`) upgrades one
/// node at a time, first to `accept-unsigned` then to `require`
/// (docs/OPERATIONS.md, "Upgrading to signed gossip"). After every single restart every
/// node still sees every node's intro points and the eligible node as eligible, so the
/// publisher keeps listing all of them under the same master key: the address is never
/// lost. `a` is eligible, `b` and `c` are workers (certified by a re-join in round 2).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_unsigned_cluster_upgrades_node_by_node() {
    let net = SimNet::new();
    let ca = authority();
    let names = ["a", "b", "c"];
    let state = |n: &str| {
        kv(&[
            (keys::ELIGIBLE, if n == "a" { "true" } else { "false" }),
            (&format!("intro/{n}"), &format!("{n}'s intro points")),
        ])
    };
    let creds = |n: &'static str, mode: SignatureMode, seed: u8| {
        let role = if n == "a" {
            CertRole::Eligible
        } else {
            CertRole::Worker
        };
        let mut auth = credentials(&ca, n, role, seed);
        auth.trust = Arc::new(Trust::new(ca.public(), mode));
        auth
    };
    let mut nodes: Vec<Node> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let seeds = nodes.iter().map(|x| x.m.local_addr()).collect();
        nodes.push(start_node(&net, n, i as u8 + 1, None, seeds, state(n)).await);
    }
    let all_see_all = async |nodes: &[Node], step: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut missing = Vec::new();
        while Instant::now() < deadline {
            missing.clear();
            for x in nodes {
                let views = x.m.members().await;
                for n in names {
                    let want = format!("{n}'s intro points");
                    let v = views.iter().find(|v| v.node_id == n && v.live);
                    let ok = v.is_some_and(|v| {
                        v.get(&format!("intro/{n}")) == Some(want.as_str())
                            && v.eligible() == (n == "a")
                    });
                    if !ok && x.name != n {
                        missing.push(format!("{} does not see {n}", x.name));
                    }
                }
            }
            if missing.is_empty() {
                return;
            }
            sleep(Duration::from_millis(100)).await;
        }
        panic!("{step}: {missing:?}");
    };
    all_see_all(&nodes, "before the upgrade").await;
    // Round 2 then round 3, one node at a time: stop it, start it again (a new
    // generation, as a restart is) with its certificate and the round's mode.
    let mut seed = 10u8;
    for mode in [SignatureMode::AcceptUnsigned, SignatureMode::Require] {
        for (i, name) in names.into_iter().enumerate() {
            let old = nodes.remove(i);
            old.m.shutdown().await.unwrap();
            let seeds = nodes.iter().map(|x| x.m.local_addr()).collect();
            seed += 1;
            let auth = creds(name, mode, seed);
            let new = start_node(&net, name, seed, Some(auth), seeds, state(name)).await;
            nodes.insert(i, new);
            all_see_all(&nodes, &format!("{name} restarted in {mode:?}")).await;
        }
    }
    for x in &nodes {
        let c = x.m.counters();
        assert_eq!(
            (
                c.dropped_bad_signature,
                c.dropped_bad_cert,
                c.dropped_revoked
            ),
            (0, 0, 0),
            "{}: {c:?}",
            x.name
        );
    }
}
