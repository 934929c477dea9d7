//! Fleet PoW (issue 16 item 4, opt-in `cluster.fleet_pow`): tor's proof-of-work for a
//! cluster. Pure: what a node gossips about its tor's master service, and which
//! descriptors the publisher makes of it. The effect — `ADD_ONION` of the master key on
//! every eligible node's tor, reading that tor's descriptor back — is [`host`].
//!
//! A solution verifies only on a tor whose own descriptor has the blinded key the client
//! solved over, and with that tor's seed ([`super::pow`]). So with fleet PoW every
//! publisher-eligible node's tor also hosts the master key, and each descriptor the
//! publisher uploads to an HSDir clients fetch from lists the intro points of *one* such
//! tor with *its* `pow-params`: a client that fetched it solves over the master's blinded
//! key and that tor's seed, and that tor verifies. Different HSDirs get different tors, so
//! clients still spread over the nodes (one tor per HSDir instead of all of them in each).
//!
//! ```text
//!  node tor (instance + master service) ─GETINFO hs/service/desc/id/<master>─▶ desc_current
//!    ─▶ established intro points, pow-params, period ─▶ gossip `fleet_pow`
//!  publisher: healthy eligible members' `fleet_pow` ─▶ per period: one descriptor per tor
//!    (≤ 6: the HSDirs clients fetch from), effort ≥ `fleet_pow_min_effort`
//!    ─▶ slots of that period; other slots: the usual merged / per-HSDir descriptors
//!  every upload: revision counter 2^40 + Unix time, above any tor's own (the node tors
//!    publish their master descriptors too; the HSDirs keep the highest counter)
//! ```
//!
//! What tor shows a controller limits it (docs/FIELD-NOTES.md, "Fleet PoW"): `GETINFO`
//! returns `desc_current` only, which is the descriptor clients use from the SRV to the
//! next time-period start (half of each day). From the period start to the SRV clients
//! use the period's `desc_next`, which tor does not show: those slots get the cluster's
//! ordinary descriptors, without `pow-params`.

use rustbalance_hs::descriptor::{
    decode_intro_points, encode_intro_points, IntroPointDesc, ParsedDescriptor, PowParams, PowV1,
};
use rustbalance_hs::publish::FleetSlot;
use std::collections::BTreeMap;
use std::time::SystemTime;

pub mod host;

/// The most effort a fleet descriptor suggests: what tor's client takes at most
/// (`CLIENT_MAX_POW_EFFORT`); a member gossiping more is capped.
pub const MAX_EFFORT: u32 = 10_000;

/// The latest seed expiry an advert may give (9999-12-31T23:59:59Z): a time the clock
/// types can hold; tor's seeds expire within hours.
const LATEST_EXPIRY: u64 = 253_402_300_799;

/// What `/status` shows of this node's part in fleet PoW.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetStatus {
    /// The time period of its tor's current master descriptor.
    pub period_num: u64,
    /// Its established intro points.
    pub intro_points: usize,
    /// The effort its tor suggests.
    pub suggested_effort: u32,
}

/// What a node gossips (`fleet_pow`) about its tor's master service.
#[derive(Debug, Clone)]
pub struct FleetEntry {
    /// The time period of the descriptor the intro points were picked for.
    pub period_num: u64,
    /// The tor's current PoW seed.
    pub seed: [u8; 32],
    /// The effort tor suggests.
    pub effort: u32,
    /// When the seed expires (Unix seconds).
    pub expires: u64,
    /// The established intro points of that descriptor.
    pub intro_points: Vec<IntroPointDesc>,
}

/// Why a `fleet_pow` value is not used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FleetError {
    /// Not `v1 <period> <seed hex> <effort> <expires>\n<intro points>`.
    #[error("not a fleet PoW advert: {0}")]
    Format(&'static str),
    /// The intro points do not decode.
    #[error("its intro points: {0}")]
    IntroPoints(String),
}

impl FleetEntry {
    /// The entry of `d` (this node's tor's own descriptor for the master address, with
    /// established intro points only): `None` without `pow-params v1` or intro points.
    pub fn of(d: &ParsedDescriptor) -> Option<FleetEntry> {
        if d.intro_points.is_empty() {
            return None;
        }
        let v1 = d.pow_params.iter().find_map(PowV1::of)?;
        Some(FleetEntry {
            period_num: d.period_num,
            seed: v1.seed,
            effort: v1.effort,
            expires: rustbalance_hs::time::unix_secs(v1.expires),
            intro_points: d.intro_points.clone(),
        })
    }

    /// The gossip value.
    pub fn encode(&self) -> String {
        format!(
            "v1 {} {} {} {}\n{}",
            self.period_num,
            hex::encode(self.seed),
            self.effort,
            self.expires,
            encode_intro_points(&self.intro_points)
        )
    }

    /// Read a gossip value; any deviation is an error that says what.
    pub fn decode(value: &str) -> Result<FleetEntry, FleetError> {
        let (head, points) = value
            .split_once('\n')
            .ok_or(FleetError::Format("no intro points line"))?;
        let f: Vec<&str> = head.splitn(6, ' ').collect();
        let [scheme, period, seed, effort, expires] = f[..] else {
            return Err(FleetError::Format("not five fields"));
        };
        if scheme != "v1" {
            return Err(FleetError::Format("not scheme v1"));
        }
        let num = |s: &str, what| s.parse::<u64>().map_err(|_| FleetError::Format(what));
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(seed, &mut bytes)
            .map_err(|_| FleetError::Format("seed is not 64 hex digits"))?;
        let intro_points =
            decode_intro_points(points).map_err(|e| FleetError::IntroPoints(e.to_string()))?;
        if intro_points.is_empty() {
            return Err(FleetError::IntroPoints("none".into()));
        }
        Ok(FleetEntry {
            period_num: num(period, "bad period")?,
            seed: bytes,
            effort: u32::try_from(num(effort, "bad effort")?)
                .map_err(|_| FleetError::Format("effort over 32 bits"))?,
            expires: Some(num(expires, "bad expiry")?)
                .filter(|e| *e <= LATEST_EXPIRY)
                .ok_or(FleetError::Format("expiry after year 9999"))?,
            intro_points,
        })
    }

    /// Its `pow-params v1` with the effort raised to `min_effort` and capped at
    /// [`MAX_EFFORT`].
    pub fn pow_params(&self, min_effort: u32) -> PowParams {
        PowV1 {
            seed: self.seed,
            effort: self.effort.max(min_effort).min(MAX_EFFORT),
            expires: rustbalance_hs::time::from_unix(self.expires),
        }
        .params()
    }
}

/// The fleet descriptors of `period` (the first live slot's: the only one a tor's
/// `desc_current`, and so an honest advert, can be for; an advert for another period is
/// stale or hostile and would take that slot alone): one per tor whose seed has not
/// expired at `now`, at most `fetched` (the HSDirs clients fetch from). With more tors
/// than that, which ones go in turns with the period (each tor gets its share over the
/// days). Empty when no tor advertises that period.
pub fn fleet_slots(
    entries: &[(String, FleetEntry)],
    period: u64,
    fetched: usize,
    min_effort: u32,
    now: SystemTime,
) -> Vec<FleetSlot> {
    let now = rustbalance_hs::time::unix_secs(now);
    let mut tors: Vec<&(String, FleetEntry)> = entries
        .iter()
        .filter(|(_, e)| e.period_num == period && e.expires > now)
        .collect();
    tors.sort_by(|a, b| a.0.cmp(&b.0));
    if tors.is_empty() || fetched == 0 {
        return Vec::new();
    }
    let start = usize::try_from(period % tors.len() as u64).unwrap_or(0);
    tors.rotate_left(start);
    tors.truncate(fetched);
    vec![FleetSlot {
        period_num: period,
        descriptors: tors
            .iter()
            .map(|(_, e)| (e.intro_points.clone(), e.pow_params(min_effort)))
            .collect(),
    }]
}

/// The node names whose tors are in `slots`' descriptors, per period (for `/status` and
/// the publication record).
pub fn fleet_nodes(
    entries: &[(String, FleetEntry)],
    slots: &[FleetSlot],
) -> BTreeMap<u64, Vec<String>> {
    slots
        .iter()
        .map(|s| {
            let names = entries
                .iter()
                .filter(|(_, e)| {
                    e.period_num == s.period_num
                        && s.descriptors
                            .iter()
                            .any(|(_, pow)| PowV1::of(pow).is_some_and(|p| p.seed == e.seed))
                })
                .map(|(n, _)| n.clone())
                .collect();
            (s.period_num, names)
        })
        .collect()
}

#[cfg(test)]
mod tests;
