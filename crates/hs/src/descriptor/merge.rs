//! Fair choice of introduction points across instances.

use rand::seq::SliceRandom;
use rand::Rng;
use tor_netdoc::doc::hsdesc::IntroPointDesc;

/// The intro points one instance currently offers.
#[derive(Debug, Clone)]
pub struct InstanceIntros {
    /// A name for the instance (node/instance id; used only for reporting).
    pub instance: String,
    /// Its intro points, as read from its own descriptor.
    pub intro_points: Vec<IntroPointDesc>,
}

/// Choose at most `max` intro points fairly: the order of instances and of
/// each instance's points is shuffled with `rng`, then points are taken
/// round-robin, so the counts per instance differ by at most one (unless an
/// instance runs out). Returns the chosen points with their instance names.
pub fn select_intro_points<R: Rng + ?Sized>(
    instances: &[InstanceIntros],
    max: usize,
    rng: &mut R,
) -> Vec<(String, IntroPointDesc)> {
    let mut queues: Vec<(&str, Vec<&IntroPointDesc>)> = instances
        .iter()
        .filter(|i| !i.intro_points.is_empty())
        .map(|i| {
            let mut v: Vec<&IntroPointDesc> = i.intro_points.iter().collect();
            v.shuffle(rng);
            (i.instance.as_str(), v)
        })
        .collect();
    queues.shuffle(rng);
    let mut out = Vec::new();
    let mut round = 0;
    while out.len() < max {
        let mut took = false;
        for (name, q) in &queues {
            if out.len() >= max {
                break;
            }
            if let Some(ip) = q.get(round) {
                out.push((name.to_string(), (*ip).clone()));
                took = true;
            }
        }
        if !took {
            break;
        }
        round += 1;
    }
    out
}
