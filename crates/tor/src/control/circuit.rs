//! Typed `GETINFO circuit-status` lines (control-spec 4.1.1, the `CIRC` event format).
//!
//! ```text
//!   <id> <status> [<$FPR~nick,...>] [KEY=value ...]
//!   7 BUILT $AAAA~r1,$BBBB~r2 PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_ESTABLISHED REND_QUERY=abc
//! ```

use super::reply::{arg, parse_args};

/// One circuit as tor lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Circuit {
    /// Circuit id.
    pub id: String,
    /// `LAUNCHED`, `BUILT`, `EXTENDED`, `FAILED`, `CLOSED`, ...
    pub status: String,
    /// The relays of the path, as upper-case RSA fingerprints (see [`relay_fingerprint`]).
    pub path: Vec<String>,
    /// `PURPOSE=` (`HS_SERVICE_INTRO`, `GENERAL`, ...).
    pub purpose: Option<String>,
    /// `HS_STATE=` (`HSSI_ESTABLISHED`, ...).
    pub hs_state: Option<String>,
    /// `REND_QUERY=`: the onion address (without `.onion`) the circuit serves.
    pub rend_query: Option<String>,
}

impl Circuit {
    /// Parses one `circuit-status` line; `None` for a line without id and status.
    pub fn parse(line: &str) -> Option<Circuit> {
        let mut words = line.split(' ');
        let id = words.next().filter(|w| !w.is_empty())?.to_string();
        let status = words.next().filter(|w| !w.is_empty())?.to_string();
        let path = words
            .next()
            .filter(|w| w.starts_with('$'))
            .map(|p| p.split(',').map(relay_fingerprint).collect())
            .unwrap_or_default();
        let args = parse_args(line);
        let get = |k: &str| arg(&args, k).map(str::to_string);
        Some(Circuit {
            id,
            status,
            path,
            purpose: get("PURPOSE"),
            hs_state: get("HS_STATE"),
            rend_query: get("REND_QUERY"),
        })
    }

    /// Parses every line of a `GETINFO circuit-status` answer.
    pub fn parse_all(text: &str) -> Vec<Circuit> {
        text.lines().filter_map(Circuit::parse).collect()
    }

    /// A built intro circuit of onion service `address` (without `.onion`) whose
    /// introduction point accepted it (`HSSI_ESTABLISHED`).
    pub fn is_established_intro_of(&self, address: &str) -> bool {
        self.status == "BUILT"
            && self.purpose.as_deref() == Some("HS_SERVICE_INTRO")
            && self.hs_state.as_deref() == Some("HSSI_ESTABLISHED")
            && self.rend_query.as_deref() == Some(address)
    }

    /// The last relay of the path (the intro point of an intro circuit).
    pub fn last_hop(&self) -> Option<&str> {
        self.path.last().map(String::as_str)
    }
}

/// Relays (upper-case RSA fingerprints) where onion service `address` (without `.onion`)
/// has an *established* intro circuit. tor's own descriptor can still list intro points
/// whose circuits are gone (it refreshes the list only when it uploads); advertising those
/// sends clients to intro points that NACK them.
pub fn established_intro_relays(circuits: &[Circuit], address: &str) -> Vec<String> {
    circuits
        .iter()
        .filter(|c| c.is_established_intro_of(address))
        .filter_map(|c| c.last_hop())
        .filter(|f| f.len() == 40)
        .map(str::to_string)
        .collect()
}

/// The upper-case RSA fingerprint of a relay as tor names it in events and paths:
/// `$FPR~nick`, `$FPR=nick` or `$FPR`.
pub fn relay_fingerprint(name: &str) -> String {
    name.trim_start_matches('$')
        .split(['~', '='])
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn established_intro_circuits_of_one_instance() {
        let (a, other) = ("a".repeat(56), "b".repeat(56));
        let f1 = "A".repeat(40);
        let f2 = "b".repeat(40);
        let f3 = "C".repeat(40);
        let status = format!(
            "7 BUILT $1111111111111111111111111111111111111111~r1,${f1}~r2 BUILD_FLAGS=IS_INTERNAL PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_ESTABLISHED REND_QUERY={a} TIME_CREATED=x\n\
             8 BUILT $1111111111111111111111111111111111111111~r1,${f2}=r3 PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_ESTABLISHED REND_QUERY={a}\n\
             9 BUILT ${f3}~r4 PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_CONNECTING REND_QUERY={a}\n\
             10 BUILT ${f3}~r4 PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_ESTABLISHED REND_QUERY={other}\n\
             11 EXTENDED ${f3}~r4 PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_ESTABLISHED REND_QUERY={a}\n\
             12 BUILT $ABCD~short PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_ESTABLISHED REND_QUERY={a}\n",
        );
        let circuits = Circuit::parse_all(&status);
        assert_eq!(circuits.len(), 6);
        assert_eq!(
            established_intro_relays(&circuits, &a),
            vec![f1.clone(), f2.to_ascii_uppercase()]
        );
        assert_eq!(established_intro_relays(&circuits, &other), vec![f3]);
    }

    #[test]
    fn a_circuit_without_a_path_yet() {
        let c = Circuit::parse("3 LAUNCHED BUILD_FLAGS=NEED_CAPACITY PURPOSE=GENERAL").unwrap();
        assert_eq!((c.id.as_str(), c.status.as_str()), ("3", "LAUNCHED"));
        assert!(c.path.is_empty());
        assert_eq!(c.purpose.as_deref(), Some("GENERAL"));
        assert!(Circuit::parse("").is_none());
    }

    #[test]
    fn relay_names() {
        assert_eq!(relay_fingerprint("$abcd~nick"), "ABCD");
        assert_eq!(relay_fingerprint("$ABCD=nick"), "ABCD");
        assert_eq!(relay_fingerprint("$abcd"), "ABCD");
    }
}
