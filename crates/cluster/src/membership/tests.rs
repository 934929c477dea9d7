//! Supervision of the gossip task: a death is reported and the elector leaves the lease.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::auth::Sealer;
use crate::election::{Election, ElectionConfig};
use crate::elector::Elector;
use crate::simnet::SimNet;
use crate::wire::{self, Blocks, DeltaOp, KeyStatus, Message, PeerId};

const SECRET: &[u8] = b"membership supervision test secret";

fn secret() -> ClusterSecret {
    ClusterSecret::new(SECRET.to_vec()).unwrap()
}

async fn solo(net: &SimNet, validator: Option<Validator>) -> Arc<Membership> {
    let mut cfg = MembershipConfig::new("solo", "10.0.0.1:0".parse().unwrap());
    cfg.gossip_interval = Duration::from_millis(50);
    cfg.generation = 1;
    let m = Membership::start_with(cfg, &secret(), vec![], net, validator).await;
    Arc::new(m.unwrap())
}

fn elector(m: &Arc<Membership>) -> Elector {
    let cfg = ElectionConfig {
        renew: Duration::from_millis(500),
        lease: Duration::from_millis(1_500),
        settle: Duration::from_millis(500),
        candidate_step: Duration::from_millis(500),
        ..ElectionConfig::majority()
    };
    let election = Election::new("solo", 0, true, 1, cfg).unwrap();
    Elector::spawn(m.clone(), election, Duration::from_millis(50))
}

/// The delta that trips chitchat's max-version assert, for the node itself.
fn assert_tripping_datagram(m: &Membership) -> Vec<u8> {
    let delta = vec![
        DeltaOp::Node {
            id: PeerId {
                node_id: "solo".into(),
                generation: 1,
                addr: m.local_addr(),
            },
            last_gc_version: 0,
            from_version_excluded: 0,
        },
        DeltaOp::KeyValue {
            key: "k".into(),
            value: "v".into(),
            version: 1_000,
            status: KeyStatus::Set,
        },
        DeltaOp::SetMaxVersion(999),
    ];
    let payload = wire::encode(&Message::Ack { delta }, Blocks::Raw);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    Sealer::new(MacKey::derive(&secret()), 1).seal(now.as_millis() as u64, &payload)
}

async fn wait_publishing(e: &Elector, want: bool) {
    let mut w = e.watch();
    tokio::time::timeout(Duration::from_secs(10), w.wait_for(|p| *p == want))
        .await
        .expect("publishing flag never changed")
        .unwrap();
}

/// Without the validator, chitchat's assert kills the gossip task: the death is
/// reported and the publisher steps down at once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_gossip_task_is_reported_and_the_lease_left() {
    let net = SimNet::new();
    let m = solo(&net, None).await;
    let e = elector(&m);
    wait_publishing(&e, true).await;
    assert!(m.members().await[0].lease().is_some());

    let from = "10.0.0.9:1".parse().unwrap();
    net.inject(from, m.local_addr(), assert_tripping_datagram(&m));
    let ended = tokio::time::timeout(Duration::from_secs(1), m.gossip_ended())
        .await
        .expect("the death was not reported");
    assert!(
        matches!(&ended, GossipHealth::Died { reason } if reason.contains("panicked")),
        "{ended:?}"
    );
    wait_publishing(&e, false).await;
    assert_eq!(e.gave_up(), Some(ended));
    assert!(m.members().await[0].lease().is_none(), "lease withdrawn");
}

/// With the validator, the same datagram is counted and gossip goes on.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_validator_keeps_the_task_alive() {
    let net = SimNet::new();
    let m = solo(&net, Some(Validator::new("solo", 1))).await;
    let from = "10.0.0.9:1".parse().unwrap();
    net.inject(from, m.local_addr(), assert_tripping_datagram(&m));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(m.gossip_health().is_running());
    assert_eq!(m.counters().dropped_own_node, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failed_socket_is_a_death_and_a_shutdown_is_not() {
    let net = SimNet::new();
    let m = solo(&net, None).await;
    net.fail(m.local_addr());
    let ended = m.gossip_ended().await;
    assert!(
        matches!(&ended, GossipHealth::Died { reason } if reason.contains("simnet closed")),
        "{ended:?}"
    );

    let m = solo(&net, None).await;
    let mut health = m.watch_gossip_health();
    Arc::try_unwrap(m).ok().unwrap().shutdown().await.unwrap();
    let h = health.wait_for(|h| !h.is_running()).await.unwrap().clone();
    assert_eq!(h, GossipHealth::Stopped);
}
