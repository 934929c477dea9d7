//! Planning a publication: for each of the two live descriptor slots, the
//! master descriptor to upload and the HSDirs responsible for it. Pure: the
//! driver that talks to tor feeds in the consensus, the microdescriptors,
//! the intro points and the time, and performs the uploads.

use crate::descriptor::{
    above_tor_counter, build_master_descriptor_within, max_descriptor_size, BuildParams,
    BuiltDescriptor, ClientAuthKey, IntroPointDesc, PowParams, Protocols, DEFAULT_LIFETIME_MINUTES,
    MAX_SIZE_PARAM,
};
use crate::err::{Error, Result};
use crate::keys::IdentityKey;
use crate::ring::{Consensus, HsDir, HsDirSet};
use crate::time::{unix_secs, DescriptorSlot, TimeParams};
use rand::{CryptoRng, Rng};
use std::time::SystemTime;

/// One descriptor to upload and where.
#[derive(Debug, Clone)]
pub struct SlotUpload {
    /// Which live descriptor this is.
    pub slot: DescriptorSlot,
    /// The descriptor.
    pub descriptor: BuiltDescriptor,
    /// The HSDirs to `HSPOST` it to (`SERVER=`), in ring order.
    pub hsdirs: Vec<HsDir>,
}

/// What to publish.
pub struct PublishInput<'a> {
    /// The master key.
    pub master: &'a IdentityKey,
    /// The consensus in force.
    pub consensus: &'a Consensus,
    /// HSDirs of that consensus.
    pub hsdirs: &'a HsDirSet,
    /// Clock parameters of the network.
    pub time: TimeParams,
    /// Now.
    pub now: SystemTime,
    /// The intro points of each descriptor of a slot (each already chosen and capped; a
    /// descriptor over the size limit keeps only its first ones). One list: one merged
    /// descriptor for every responsible HSDir. Several (per-HSDir descriptors): the HSDirs
    /// clients fetch from get list 0, 1, … in their order, the other responsible HSDirs
    /// take them again in turn.
    pub descriptors: &'a [Vec<IntroPointDesc>],
    /// `flow-control` to advertise.
    pub flow_control: Option<(Protocols, u8)>,
    /// `pow-params` to carry.
    pub pow_params: Option<&'a PowParams>,
    /// Restricted discovery: the authorized clients (`None`: open).
    pub auth_clients: Option<&'a [ClientAuthKey]>,
    /// Fleet PoW: for a slot of one of these periods, these descriptors instead of
    /// `descriptors`, each with the `pow-params` of the one tor whose intro points it lists.
    pub fleet: &'a [FleetSlot],
    /// Revision counters above any tor's ([`above_tor_counter`]) instead of tor's own: with
    /// fleet PoW, node tors holding the master key upload descriptors of their own.
    pub above_tor_counters: bool,
}

/// Fleet PoW descriptors for one time period.
#[derive(Debug, Clone)]
pub struct FleetSlot {
    /// The time period (the one the tors' descriptors were made for).
    pub period_num: u64,
    /// One descriptor per entry: one tor's intro points and its `pow-params`. The HSDirs
    /// clients fetch from get entry 0, 1, … in their order (and again in turn).
    pub descriptors: Vec<(Vec<IntroPointDesc>, PowParams)>,
}

/// Build both live descriptors and find their HSDirs. A descriptor that would be over
/// the HSDirs' size limit (the consensus' `HSV3MaxDescriptorSize`) lists fewer intro
/// points ([`BuiltDescriptor::dropped`]) instead of failing.
pub fn plan_uploads<R: Rng + CryptoRng>(
    input: &PublishInput<'_>,
    rng: &mut R,
) -> Result<Vec<SlotUpload>> {
    if input.hsdirs.is_empty() {
        return Err(Error::BadDirectoryDoc {
            what: "consensus",
            reason: "it lists no HSDir with a known ed25519 identity; \
                     wait until tor has fetched the microdescriptors"
                .into(),
        });
    }
    let limit = max_descriptor_size(input.consensus.params.get(MAX_SIZE_PARAM).copied());
    let slots = input
        .time
        .live_slots(unix_secs(input.now), input.consensus.valid_after_unix());
    let mut uploads = Vec::new();
    for slot in &slots {
        uploads.extend(plan_slot(input, slot, limit, rng)?);
    }
    Ok(uploads)
}

/// The uploads of one slot: one descriptor to every responsible HSDir (merged), or one
/// per list of `input.descriptors`, each to its HSDirs.
fn plan_slot<R: Rng + CryptoRng>(
    input: &PublishInput<'_>,
    slot: &DescriptorSlot,
    limit: usize,
    rng: &mut R,
) -> Result<Vec<SlotUpload>> {
    let fleet = input
        .fleet
        .iter()
        .find(|f| f.period_num == slot.period_num && !f.descriptors.is_empty());
    let lists: Vec<(&[IntroPointDesc], Option<&PowParams>)> = match fleet {
        Some(f) => f
            .descriptors
            .iter()
            .map(|(points, pow)| (&points[..], Some(pow)))
            .collect(),
        // No intro points at all: one descriptor that lists none.
        None if input.descriptors.is_empty() => vec![(&[][..], input.pow_params)],
        None => input
            .descriptors
            .iter()
            .map(|points| (&points[..], input.pow_params))
            .collect(),
    };
    let revision = input
        .above_tor_counters
        .then(|| above_tor_counter(input.now));
    let mut built = Vec::with_capacity(lists.len());
    for (points, pow_params) in lists {
        built.push(build_master_descriptor_within(
            &BuildParams {
                master: input.master,
                time: input.time,
                slot: *slot,
                now: input.now,
                intro_points: points,
                flow_control: input.flow_control.clone(),
                pow_params,
                lifetime_minutes: DEFAULT_LIFETIME_MINUTES,
                auth_clients: input.auth_clients,
                revision,
            },
            limit,
            rng,
        )?);
    }
    let srv = input.consensus.srv_for(&input.time, slot);
    let blinded = built[0].blinded_key;
    let (period, minutes) = (slot.period_num, input.time.period_minutes);
    let responsible = input.hsdirs.responsible(&blinded, period, minutes, &srv);
    let fetched = input.hsdirs.fetched_from(&blinded, period, minutes, &srv);
    let mut by_list: Vec<Vec<HsDir>> = vec![Vec::new(); built.len()];
    let mut spare = 0;
    for d in &responsible {
        let i = match fetched.iter().position(|f| f == d) {
            Some(i) => i,
            None => {
                spare += 1;
                spare - 1
            }
        };
        by_list[i % built.len()].push(d.clone());
    }
    Ok(built
        .into_iter()
        .zip(by_list)
        .enumerate()
        // A list no HSDir takes (fewer HSDirs than lists) is not uploaded.
        .filter(|(i, (_, dirs))| *i == 0 || !dirs.is_empty())
        .map(|(_, (descriptor, hsdirs))| SlotUpload {
            slot: *slot,
            descriptor,
            hsdirs,
        })
        .collect())
}
