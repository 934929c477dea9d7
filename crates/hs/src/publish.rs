//! Planning a publication: for each of the two live descriptor slots, the
//! master descriptor to upload and the HSDirs responsible for it. Pure: the
//! driver that talks to tor feeds in the consensus, the microdescriptors,
//! the intro points and the time, and performs the uploads.

use crate::descriptor::{
    build_master_descriptor_within, max_descriptor_size, BuildParams, BuiltDescriptor,
    ClientAuthKey, IntroPointDesc, PowParams, Protocols, DEFAULT_LIFETIME_MINUTES, MAX_SIZE_PARAM,
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
    /// The intro points to list (already chosen and capped); a descriptor over the
    /// size limit keeps only the first ones.
    pub intro_points: &'a [IntroPointDesc],
    /// `flow-control` to advertise.
    pub flow_control: Option<(Protocols, u8)>,
    /// `pow-params` to carry.
    pub pow_params: Option<&'a PowParams>,
    /// Restricted discovery: the authorized clients (`None`: open).
    pub auth_clients: Option<&'a [ClientAuthKey]>,
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
    slots
        .iter()
        .map(|slot| {
            let descriptor = build_master_descriptor_within(
                &BuildParams {
                    master: input.master,
                    time: input.time,
                    slot: *slot,
                    now: input.now,
                    intro_points: input.intro_points,
                    flow_control: input.flow_control.clone(),
                    pow_params: input.pow_params,
                    lifetime_minutes: DEFAULT_LIFETIME_MINUTES,
                    auth_clients: input.auth_clients,
                },
                limit,
                rng,
            )?;
            let srv = input.consensus.srv_for(&input.time, slot);
            let hsdirs = input.hsdirs.responsible(
                &descriptor.blinded_key,
                slot.period_num,
                input.time.period_minutes,
                &srv,
            );
            Ok(SlotUpload {
                slot: *slot,
                descriptor,
                hsdirs,
            })
        })
        .collect()
}
