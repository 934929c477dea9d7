//! v3 descriptors: parse an instance's descriptor from its address alone,
//! keep only intro points tor would write, choose intro points fairly across
//! instances, and build the master descriptor.
//!
//! Size limits are tor's: a descriptor above [`MAX_DESCRIPTOR_SIZE`] bytes is
//! refused by HSDirs, and clients ignore more than [`MAX_INTRO_POINTS`]
//! introduction points. [`build_master_descriptor_within`] lists fewer intro
//! points rather than build a descriptor HSDirs would refuse.

use std::time::SystemTime;

mod build;
mod client_auth;
mod intro_check;
mod intro_codec;
mod layer;
mod merge;
mod parse;

pub use build::{
    above_tor_counter, build_master_descriptor, build_master_descriptor_within, revision_counter,
    BuildParams, BuiltDescriptor, ABOVE_TOR_COUNTER_BASE, DEFAULT_LIFETIME_MINUTES,
};
pub use client_auth::{
    auth_line, padded_clients, parse_auth_file, ClientAuthKey, ClientSecret, AUTH_CLIENT_MULTIPLE,
    MAX_AUTH_CLIENTS,
};
pub use intro_check::{
    check_intro_point, check_link_specifiers, usable_intro_points, IntroPointFault,
    MAX_LINK_SPECIFIERS,
};
#[cfg(any(test, feature = "testing"))]
pub use intro_codec::encode_intro_points_unchecked;
pub use intro_codec::{
    decode_intro_points, decode_intro_points_bytes, encode_intro_points, intro_point_relay,
};
pub use merge::{common_flow_control, select_intro_points, InstanceIntros, Selected};
pub use parse::{parse_descriptor, parse_descriptor_as_client, ParsedDescriptor};

/// Largest descriptor tor's HSDirs accept: C tor refuses a descriptor whose
/// length is `>= HSV3MaxDescriptorSize` (a consensus parameter, default
/// `HS_DESC_MAX_LEN`, 50,000), so 49,999 bytes is the most that is stored;
/// see [`max_descriptor_size`] for a consensus that sets the parameter.
pub const MAX_DESCRIPTOR_SIZE: usize = 49_999;

/// The consensus parameter that lowers (or raises) the HSDirs' size limit.
pub const MAX_SIZE_PARAM: &str = "HSV3MaxDescriptorSize";

/// The largest descriptor HSDirs store under a consensus whose
/// `HSV3MaxDescriptorSize` is `param` (`None`: not set), never above
/// [`MAX_DESCRIPTOR_SIZE`].
pub fn max_descriptor_size(param: Option<i64>) -> usize {
    match param {
        Some(v) if v >= 1 => usize::try_from(v - 1)
            .unwrap_or(MAX_DESCRIPTOR_SIZE)
            .min(MAX_DESCRIPTOR_SIZE),
        _ => MAX_DESCRIPTOR_SIZE,
    }
}
/// Most intro points a client accepts in one descriptor.
pub const MAX_INTRO_POINTS: usize = tor_hscrypto::NUM_INTRO_POINT_MAX;

pub use tor_netdoc::doc::hsdesc::pow::PowParams;
pub use tor_netdoc::doc::hsdesc::IntroPointDesc;
pub use tor_protover::Protocols;

/// The parts of a `pow-params v1` line: seed, suggested effort, seed expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowV1 {
    /// The service's current seed.
    pub seed: [u8; 32],
    /// The suggested effort.
    pub effort: u32,
    /// When the seed expires.
    pub expires: SystemTime,
}

impl PowV1 {
    /// The parts of `p`; `None` for another scheme or a seed without an expiry.
    pub fn of(p: &PowParams) -> Option<PowV1> {
        let PowParams::V1(v1) = p else { return None };
        let seed: &[u8; 32] = v1.seed().dangerously_peek().as_ref();
        Some(PowV1 {
            seed: *seed,
            effort: v1.suggested_effort().into(),
            expires: v1.seed().bounds_start_end().1?,
        })
    }

    /// The `pow-params v1` line these parts make.
    pub fn params(&self) -> PowParams {
        let seed = tor_checkable::timed::TimeRangeBound::new(
            tor_hscrypto::pow::v1::Seed::from(self.seed),
            ..self.expires,
        );
        PowParams::V1(tor_netdoc::doc::hsdesc::pow::v1::PowParamsV1::new(
            seed,
            self.effort.into(),
        ))
    }
}
