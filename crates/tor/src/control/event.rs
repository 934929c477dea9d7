//! Asynchronous `650` events and the typed view of the ones we use.

use super::reply::{arg, parse_args, Reply, ReplyLine};

/// One asynchronous event (`650 ...`, possibly multi-line or with data blocks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's lines; the first holds the event name.
    pub lines: Vec<ReplyLine>,
}

impl Event {
    pub(crate) fn from_reply(reply: Reply) -> Self {
        Event { lines: reply.lines }
    }

    /// The event name (`HS_DESC`, `STATUS_CLIENT`, ...).
    pub fn kind(&self) -> &str {
        self.text().split(' ').next().unwrap_or("")
    }

    /// The first line's text, event name included.
    pub fn text(&self) -> &str {
        self.lines.first().map(|l| l.text.as_str()).unwrap_or("")
    }

    /// The first data block of the event, if any (the descriptor of an
    /// `HS_DESC_CONTENT` event).
    pub fn data(&self) -> Option<&str> {
        self.lines.iter().find_map(|l| l.data.as_deref())
    }

    /// Parses an `HS_DESC` event; `None` for any other kind.
    pub fn hs_desc(&self) -> Option<HsDescEvent> {
        if self.kind() != "HS_DESC" {
            return None;
        }
        let args = parse_args(self.text());
        // A relay named `$FPR=nick` parses as a keyword argument; it is positional here.
        let positional: Vec<String> = args
            .iter()
            .skip(1)
            .filter_map(|a| match &a.key {
                None => Some(a.value.clone()),
                Some(k) if k.starts_with('$') => Some(format!("{k}={}", a.value)),
                Some(_) => None,
            })
            .collect();
        Some(HsDescEvent {
            action: positional.first()?.clone(),
            address: positional.get(1)?.clone(),
            auth_type: positional.get(2).cloned().unwrap_or_default(),
            hsdir: positional.get(3).cloned().unwrap_or_default(),
            descriptor_id: positional.get(4).cloned(),
            reason: arg(&args, "REASON").map(str::to_string),
        })
    }

    /// Parses an `HS_DESC_CONTENT` event: `(address, hsdir, descriptor)`.
    /// An empty descriptor means the fetch found nothing.
    pub fn hs_desc_content(&self) -> Option<HsDescContent> {
        if self.kind() != "HS_DESC_CONTENT" {
            return None;
        }
        let words = positional(self.text());
        Some(HsDescContent {
            address: words.get(1)?.clone(),
            descriptor_id: words.get(2).cloned().unwrap_or_default(),
            hsdir: words.get(3).cloned().unwrap_or_default(),
            descriptor: self.data().unwrap_or("").to_string(),
        })
    }
}

/// The words of an event line, each whole: a relay named `$FPR=nick` or a base64 value
/// ending in `=` stays one word (`parse_args` would split it into key and value).
fn positional(text: &str) -> Vec<String> {
    parse_args(text)
        .into_iter()
        .map(|a| match a.key {
            Some(k) => format!("{k}={}", a.value),
            None => a.value,
        })
        .collect()
}

/// A parsed `HS_DESC` event (control-spec 4.1.25).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsDescEvent {
    /// `REQUESTED`, `UPLOAD`, `RECEIVED`, `UPLOADED`, `IGNORE`, `FAILED`, `CREATED`.
    pub action: String,
    /// Onion address without `.onion` (or `UNKNOWN`).
    pub address: String,
    /// Client authorisation type (`NO_AUTH`, `UNKNOWN`, ...).
    pub auth_type: String,
    /// The HSDir, `$FINGERPRINT~nick` or `UNKNOWN`.
    pub hsdir: String,
    /// Descriptor id / blinded key, when tor reports it.
    pub descriptor_id: Option<String>,
    /// `REASON=` of a failed action.
    pub reason: Option<String>,
}

impl HsDescEvent {
    /// The HSDir's upper-case RSA fingerprint (empty when tor did not name one).
    pub fn hsdir_fingerprint(&self) -> String {
        super::circuit::relay_fingerprint(&self.hsdir)
    }
}

/// A parsed `HS_DESC_CONTENT` event (control-spec 4.1.26).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsDescContent {
    /// Onion address without `.onion`.
    pub address: String,
    /// Descriptor id (blinded key) reported by tor.
    pub descriptor_id: String,
    /// The HSDir that served it.
    pub hsdir: String,
    /// The descriptor text; empty when the HSDir had none (tor sends it empty after a
    /// `NOT_FOUND`, `QUERY_REJECTED`, `BAD_DESC` or unexpected answer).
    pub descriptor: String,
}

impl HsDescContent {
    /// The HSDir's upper-case RSA fingerprint (empty when tor did not name one).
    pub fn hsdir_fingerprint(&self) -> String {
        super::circuit::relay_fingerprint(&self.hsdir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(lines: &[(&str, Option<&str>)]) -> Event {
        Event {
            lines: lines
                .iter()
                .map(|(t, d)| ReplyLine {
                    text: t.to_string(),
                    data: d.map(str::to_string),
                })
                .collect(),
        }
    }

    #[test]
    fn hs_desc_uploaded() {
        let e = ev(&[("HS_DESC UPLOADED abcdef UNKNOWN $AAAA~r1 REASON=x", None)]);
        let h = e.hs_desc().unwrap();
        assert_eq!(h.action, "UPLOADED");
        assert_eq!(h.address, "abcdef");
        assert_eq!(h.hsdir, "$AAAA~r1");
        assert_eq!(h.descriptor_id, None);
        assert_eq!(h.reason.as_deref(), Some("x"));
        assert!(e.hs_desc_content().is_none());
        assert_eq!(h.hsdir_fingerprint(), "AAAA");
    }

    #[test]
    fn hs_desc_with_an_equals_sign_relay_name() {
        let e = ev(&[(
            "HS_DESC FAILED abc NO_AUTH $bbbb=r2 descid REASON=UPLOAD_REJECTED",
            None,
        )]);
        let h = e.hs_desc().unwrap();
        assert_eq!(h.hsdir, "$bbbb=r2");
        assert_eq!(h.hsdir_fingerprint(), "BBBB");
        assert_eq!(h.descriptor_id.as_deref(), Some("descid"));
        assert_eq!(h.reason.as_deref(), Some("UPLOAD_REJECTED"));
    }

    #[test]
    fn hs_desc_content() {
        let e = ev(&[
            (
                "HS_DESC_CONTENT addr descid $BB~r2",
                Some("hs-descriptor 3\n"),
            ),
            ("OK", None),
        ]);
        let c = e.hs_desc_content().unwrap();
        assert_eq!(c.address, "addr");
        assert_eq!(c.hsdir, "$BB~r2");
        assert_eq!(c.descriptor, "hs-descriptor 3\n");
        assert_eq!(c.hsdir_fingerprint(), "BB");
    }

    #[test]
    fn hs_desc_content_keeps_equals_signs_in_words() {
        let e = ev(&[
            ("HS_DESC_CONTENT addr desc+id= $CC=r3", Some("")),
            ("OK", None),
        ]);
        let c = e.hs_desc_content().unwrap();
        assert_eq!(c.descriptor_id, "desc+id=");
        assert_eq!(c.hsdir, "$CC=r3");
        assert_eq!(c.hsdir_fingerprint(), "CC");
        assert_eq!(c.descriptor, "");
    }
}
