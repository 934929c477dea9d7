//! v3 descriptors: parse an instance's descriptor from its address alone,
//! choose intro points fairly across instances, and build the master
//! descriptor.
//!
//! Size limits are tor's: a descriptor above [`MAX_DESCRIPTOR_SIZE`] bytes is
//! refused by HSDirs, and clients ignore more than [`MAX_INTRO_POINTS`]
//! introduction points.

mod build;
mod intro_codec;
mod layer;
mod merge;
mod parse;

pub use build::{
    build_master_descriptor, revision_counter, BuildParams, BuiltDescriptor,
    DEFAULT_LIFETIME_MINUTES,
};
pub use intro_codec::{decode_intro_points, encode_intro_points, intro_point_relay};
pub use merge::{select_intro_points, InstanceIntros};
pub use parse::{parse_descriptor, ParsedDescriptor};

/// Largest descriptor tor's HSDirs accept: C tor refuses `>= HS_DESC_MAX_LEN`
/// (50,000), so 49,999 bytes is the most that is stored.
pub const MAX_DESCRIPTOR_SIZE: usize = 49_999;
/// Most intro points a client accepts in one descriptor.
pub const MAX_INTRO_POINTS: usize = tor_hscrypto::NUM_INTRO_POINT_MAX;

pub use tor_netdoc::doc::hsdesc::pow::PowParams;
pub use tor_netdoc::doc::hsdesc::IntroPointDesc;
pub use tor_protover::Protocols;
