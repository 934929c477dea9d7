//! The test cluster's methods: start, gossip, deliver crafted messages to `c`.

use super::*;

impl Cluster {
    /// Boots the four members with signed gossip and waits until `c` sees everyone.
    pub(crate) async fn start() -> Cluster {
        Cluster::start_with(Some).await
    }

    /// Boots with `auth` deciding each member's credentials (`None`: unsigned gossip).
    pub(crate) async fn start_with(auth: impl Fn(GossipAuth) -> Option<GossipAuth>) -> Cluster {
        let net = SimNet::new();
        let ca = authority();
        let cred = |name, role, seed| auth(credentials(&ca, name, role, seed));
        let a_state = kv(&[
            (keys::ELIGIBLE, "true"),
            (keys::TARGET_HEALTH, "up"),
            ("intro/a", "a's intro points"),
        ]);
        let a = start_node(
            &net,
            "a",
            1,
            cred("a", CertRole::Eligible, 1),
            vec![],
            a_state,
        )
        .await;
        let seeds = vec![a.m.local_addr()];
        let worker = |n: &str| {
            let mut state = kv(&[(keys::ELIGIBLE, "false"), (keys::TARGET_HEALTH, "up")]);
            state.push((format!("intro/{n}"), format!("{n}'s intro points")));
            state
        };
        let b = start_node(
            &net,
            "b",
            2,
            cred("b", CertRole::Worker, 2),
            seeds.clone(),
            worker("b"),
        )
        .await;
        let c = start_node(
            &net,
            "c",
            3,
            cred("c", CertRole::Worker, 3),
            seeds.clone(),
            worker("c"),
        )
        .await;
        let m = start_node(
            &net,
            "m",
            4,
            cred("m", CertRole::Worker, 4),
            seeds,
            worker("m"),
        )
        .await;
        let secret = ClusterSecret::new(SECRET.as_bytes().to_vec()).unwrap();
        let cluster = Cluster {
            net,
            authority: ca,
            a,
            b,
            c,
            m,
            sealer: Sealer::new(MacKey::derive(&secret), 0x0bad_0bad),
        };
        for n in ["a", "b", "m"] {
            let want = format!("{n}'s intro points");
            assert!(
                cluster.c_sees(n, &format!("intro/{n}"), Some(&want)).await,
                "c never learnt {n}'s state"
            );
        }
        cluster
    }

    /// Delivers `delta` to `c` in an Ack sealed with the cluster key, as if from `m`.
    pub(crate) fn inject(&mut self, delta: Vec<DeltaOp>) {
        let payload = wire::encode(&Message::Ack { delta }, Blocks::Raw);
        let datagram = self.sealer.seal(unix_ms(), &payload);
        self.net
            .inject(self.m.m.local_addr(), self.c.m.local_addr(), datagram);
    }

    /// `node`'s value of `key` as `c` sees it.
    pub(crate) async fn in_c(&self, node: &str, key: &str) -> Option<String> {
        let members = self.c.m.members().await;
        let view = members.into_iter().find(|v| v.node_id == node)?;
        view.get(key).map(str::to_owned)
    }

    /// Waits (virtual time, up to 5 s) until `c` sees `node`'s `key` as `want`.
    pub(crate) async fn c_sees(&self, node: &str, key: &str, want: Option<&str>) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.in_c(node, key).await.as_deref() == want {
                return true;
            }
            sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Lets gossip run for a second (virtual time).
    pub(crate) async fn settle(&self) {
        sleep(Duration::from_secs(1)).await;
    }
}
