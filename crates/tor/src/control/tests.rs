//! The client against an in-process fake control port.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::*;

/// A command as the fake received it: the first line and, for `+` commands,
/// the raw (still dot-stuffed) body lines up to the terminating `.`.
#[derive(Debug, Clone)]
struct Received {
    line: String,
    body: Option<Vec<String>>,
}

/// Starts a fake tor control port. `answer` maps each received command to
/// the raw bytes to send back (which may include `650` events). All received
/// commands are recorded.
async fn fake_tor<F>(mut answer: F) -> (SocketAddr, Arc<Mutex<Vec<Received>>>)
where
    F: FnMut(&Received) -> String + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = Arc::clone(&log);
    tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let (r, mut w) = sock.into_split();
        let mut r = BufReader::new(r);
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.unwrap() == 0 {
                return;
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            let body = if line.starts_with('+') {
                let mut body = Vec::new();
                loop {
                    let mut l = String::new();
                    r.read_line(&mut l).await.unwrap();
                    let l = l.trim_end_matches(['\r', '\n']).to_string();
                    if l == "." {
                        break;
                    }
                    body.push(l);
                }
                Some(body)
            } else {
                None
            };
            let rec = Received { line, body };
            let out = answer(&rec);
            log2.lock().unwrap().push(rec);
            w.write_all(out.as_bytes()).await.unwrap();
            if out.is_empty() {
                // Simulate tor dying mid-conversation.
                return;
            }
        }
    });
    (addr, log)
}

fn null_auth(rec: &Received) -> Option<String> {
    match rec.line.as_str() {
        "PROTOCOLINFO 1" => Some(
            "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL\r\n250-VERSION Tor=\"0.4.9.11\"\r\n250 OK\r\n"
                .to_string(),
        ),
        "AUTHENTICATE" => Some("250 OK\r\n".to_string()),
        _ => None,
    }
}

#[tokio::test]
async fn getinfo_single_line_and_data_block() {
    let (addr, _) = fake_tor(|rec| {
        null_auth(rec).unwrap_or_else(|| match rec.line.as_str() {
            "GETINFO version" => "250-version=0.4.9.11\r\n250 OK\r\n".into(),
            "GETINFO ns/all" => "250+ns/all=\r\nr r1 x\r\n..dotted\r\n.\r\n250 OK\r\n".into(),
            "GETINFO nope" => "552 Unrecognized key \"nope\"\r\n".into(),
            other => panic!("unexpected {other}"),
        })
    })
    .await;
    let c = ControlClient::connect_authenticated(addr).await.unwrap();
    assert_eq!(c.getinfo("version").await.unwrap(), "0.4.9.11");
    assert_eq!(c.getinfo("ns/all").await.unwrap(), "r r1 x\n.dotted\n");
    match c.getinfo("nope").await {
        Err(Error::Refused {
            code,
            message,
            command,
        }) => {
            assert_eq!(code, 552);
            assert!(message.contains("Unrecognized key"));
            assert_eq!(command, "GETINFO nope");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(matches!(
        c.getinfo("two words").await,
        Err(Error::InvalidArgument { .. })
    ));
}

#[tokio::test]
async fn events_are_separated_from_replies() {
    let (addr, _) = fake_tor(|rec| {
        null_auth(rec).unwrap_or_else(|| match rec.line.as_str() {
            "SETEVENTS HS_DESC HS_DESC_CONTENT" => concat!(
                "250 OK\r\n",
                "650 HS_DESC UPLOAD abc UNKNOWN $AA~r1 descid\r\n",
            )
            .into(),
            // Events before and after the reply, one of them multi-line
            // with a data block.
            "GETINFO version" => concat!(
                "650 HS_DESC UPLOADED abc UNKNOWN $AA~r1\r\n",
                "650+HS_DESC_CONTENT abc descid $BB~r2\r\n",
                "hs-descriptor 3\r\n",
                "..leading dot\r\n",
                ".\r\n",
                "650 OK\r\n",
                "250-version=1\r\n",
                "250 OK\r\n",
                "650-STATUS_CLIENT NOTICE X\r\n",
                "650 more\r\n",
            )
            .into(),
            other => panic!("unexpected {other}"),
        })
    })
    .await;
    let c = ControlClient::connect_authenticated(addr).await.unwrap();
    let mut events = c.take_events().unwrap();
    assert!(c.take_events().is_none());
    c.setevents(&["HS_DESC", "HS_DESC_CONTENT"]).await.unwrap();
    assert_eq!(c.getinfo("version").await.unwrap(), "1");

    let e1 = events.recv().await.unwrap();
    let h = e1.hs_desc().unwrap();
    assert_eq!(
        (h.action.as_str(), h.descriptor_id.as_deref()),
        ("UPLOAD", Some("descid"))
    );
    let e2 = events.recv().await.unwrap();
    assert_eq!(e2.hs_desc().unwrap().action, "UPLOADED");
    let e3 = events.recv().await.unwrap();
    let content = e3.hs_desc_content().unwrap();
    assert_eq!(content.descriptor, "hs-descriptor 3\n.leading dot\n");
    assert_eq!(content.hsdir, "$BB~r2");
    let e4 = events.recv().await.unwrap();
    assert_eq!(e4.kind(), "STATUS_CLIENT");
    assert_eq!(e4.lines.len(), 2);
}

#[tokio::test]
async fn hspost_is_dot_stuffed() {
    let (addr, log) = fake_tor(|rec| {
        null_auth(rec).unwrap_or_else(|| {
            assert!(rec.line.starts_with("+HSPOST"));
            "250 OK\r\n".into()
        })
    })
    .await;
    let c = ControlClient::connect_authenticated(addr).await.unwrap();
    let desc = "hs-descriptor 3\n.starts with dot\n..two\nend\n";
    c.hspost(desc, &["AAAA", "BBBB"], Some("abcd.onion"))
        .await
        .unwrap();
    c.hspost(desc, &[] as &[&str], None).await.unwrap();
    assert!(matches!(
        c.hspost(desc, &["A B"], None).await,
        Err(Error::InvalidArgument { .. })
    ));
    let log = log.lock().unwrap();
    let post = &log[2];
    assert_eq!(post.line, "+HSPOST SERVER=AAAA SERVER=BBBB HSADDRESS=abcd");
    assert_eq!(
        post.body.as_deref().unwrap(),
        ["hs-descriptor 3", "..starts with dot", "...two", "end"]
    );
    assert_eq!(log[3].line, "+HSPOST");
    assert_eq!(log.len(), 4, "the invalid HSPOST was never sent");
}

#[tokio::test]
async fn setconf_signal_hsfetch_wire_format() {
    let (addr, log) = fake_tor(|rec| null_auth(rec).unwrap_or_else(|| "250 OK\r\n".into())).await;
    let c = ControlClient::connect_authenticated(addr).await.unwrap();
    c.setconf(&[("ContactInfo", "a \"b\""), ("SocksPort", "0")])
        .await
        .unwrap();
    c.signal("NEWNYM").await.unwrap();
    c.hsfetch("abc.onion", &["FPR1".to_string()]).await.unwrap();
    let log = log.lock().unwrap();
    let lines: Vec<&str> = log.iter().skip(2).map(|r| r.line.as_str()).collect();
    assert_eq!(
        lines,
        [
            r#"SETCONF ContactInfo="a \"b\"" SocksPort="0""#,
            "SIGNAL NEWNYM",
            "HSFETCH abc SERVER=FPR1",
        ]
    );
}

/// `ADD_ONION` carries the secret key on the wire only: a refusal names the command,
/// never the key, and a key that is not one word is refused without being shown.
#[tokio::test]
async fn add_onion_wire_format_and_errors_without_the_key() {
    let (addr, log) = fake_tor(|rec| {
        null_auth(rec).unwrap_or_else(|| {
            if rec.line.contains("Port=bad") {
                "512 Invalid VIRTPORT/TARGET\r\n".into()
            } else if rec.line.starts_with("ADD_ONION") {
                "250-ServiceID=abcd\r\n250 OK\r\n".into()
            } else {
                "250 OK\r\n".into()
            }
        })
    })
    .await;
    let c = ControlClient::connect_authenticated(addr).await.unwrap();
    let key = "ED25519-V3:c2VjcmV0";
    let args = [
        "Port=80,127.0.0.1:1".to_string(),
        "PoWDefensesEnabled=1".into(),
    ];
    assert_eq!(c.add_onion(key, &args).await.unwrap(), "abcd");
    c.del_onion("abcd.onion").await.unwrap();
    let e = c.add_onion(key, &["Port=bad".into()]).await.unwrap_err();
    assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
    assert!(e.to_string().contains("ADD_ONION"), "{e}");
    let e = c.add_onion("ED25519-V3:se cret", &[]).await.unwrap_err();
    assert!(!e.to_string().contains("cret"), "{e}");
    assert!(c.add_onion(key, &["Flags=a b".into()]).await.is_err());
    let log = log.lock().unwrap();
    let lines: Vec<&str> = log.iter().skip(2).map(|r| r.line.as_str()).collect();
    assert_eq!(
        lines,
        [
            "ADD_ONION ED25519-V3:c2VjcmV0 Port=80,127.0.0.1:1 PoWDefensesEnabled=1",
            "DEL_ONION abcd",
            "ADD_ONION ED25519-V3:c2VjcmV0 Port=bad",
        ]
    );
}

#[tokio::test]
async fn closed_connection_fails_waiting_commands() {
    let (addr, _) = fake_tor(|rec| null_auth(rec).unwrap_or_default()).await;
    let c = ControlClient::connect_authenticated(addr).await.unwrap();
    let mut events = c.take_events().unwrap();
    match c.getinfo("version").await {
        Err(Error::Closed { command, .. }) => assert_eq!(command, "GETINFO version"),
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(events.recv().await.is_none(), "events channel closes too");
    assert!(matches!(
        c.signal("NEWNYM").await,
        Err(Error::Closed { .. })
    ));
}

#[tokio::test]
async fn reply_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let (_sock, _) = listener.accept().await.unwrap();
        std::future::pending::<()>().await;
    });
    let c = ControlClient::connect(addr).await.unwrap();
    c.set_timeout(Duration::from_millis(100));
    assert!(matches!(
        c.protocol_info().await,
        Err(Error::Timeout { .. })
    ));
}

/// A fake tor that only accepts SAFECOOKIE. `lie` makes it send a wrong
/// server hash.
async fn safecookie_tor(cookie: [u8; 32], cookie_path: String, lie: bool) -> SocketAddr {
    let server_nonce = [0x5au8; 32];
    let client_nonce = Arc::new(Mutex::new(Vec::new()));
    let (addr, _) = fake_tor(move |rec| {
        let line = rec.line.as_str();
        if line == "PROTOCOLINFO 1" {
            return format!(
                "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE=\"{cookie_path}\"\r\n250-VERSION Tor=\"0.4.9.11\"\r\n250 OK\r\n"
            );
        }
        if let Some(n) = line.strip_prefix("AUTHCHALLENGE SAFECOOKIE ") {
            let n = hex::decode(n).unwrap();
            let mut sh = auth::server_hash(&cookie, &n, &server_nonce);
            if lie {
                sh[5] ^= 0xff;
            }
            *client_nonce.lock().unwrap() = n;
            return format!(
                "250 AUTHCHALLENGE SERVERHASH={} SERVERNONCE={}\r\n",
                hex::encode_upper(sh),
                hex::encode_upper(server_nonce)
            );
        }
        if let Some(h) = line.strip_prefix("AUTHENTICATE ") {
            let n = client_nonce.lock().unwrap().clone();
            let want = auth::client_hash(&cookie, &n, &server_nonce);
            return if hex::decode(h).unwrap() == want {
                "250 OK\r\n".into()
            } else {
                "515 Authentication failed: Safe cookie response did not match expected value.\r\n".into()
            };
        }
        if line == "GETINFO version" {
            return "250-version=0.4.9.11\r\n250 OK\r\n".into();
        }
        "514 Authentication required.\r\n".into()
    })
    .await;
    addr
}

#[tokio::test]
async fn safecookie_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control_auth_cookie");
    let cookie = [0x42u8; 32];
    std::fs::write(&path, cookie).unwrap();
    let addr = safecookie_tor(cookie, path.display().to_string(), false).await;
    let c = ControlClient::connect_authenticated(addr).await.unwrap();
    assert_eq!(c.getinfo("version").await.unwrap(), "0.4.9.11");
}

#[tokio::test]
async fn safecookie_rejects_wrong_server_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control_auth_cookie");
    std::fs::write(&path, [0x42u8; 32]).unwrap();
    let addr = safecookie_tor([0x42u8; 32], path.display().to_string(), true).await;
    let c = ControlClient::connect(addr).await.unwrap();
    assert!(matches!(
        c.authenticate(&Auth::Auto).await,
        Err(Error::ServerHashMismatch { .. })
    ));
}

#[tokio::test]
async fn safecookie_with_wrong_cookie_is_refused_by_tor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control_auth_cookie");
    std::fs::write(&path, [0x43u8; 32]).unwrap();
    // tor's cookie differs from the file: the server hash check fails first.
    let addr = safecookie_tor([0x42u8; 32], path.display().to_string(), false).await;
    let c = ControlClient::connect(addr).await.unwrap();
    assert!(matches!(
        c.authenticate(&Auth::Auto).await,
        Err(Error::ServerHashMismatch { .. })
    ));
    // A short cookie file is reported as such.
    std::fs::write(&path, [1u8; 5]).unwrap();
    let addr = safecookie_tor([0x42u8; 32], path.display().to_string(), false).await;
    let c = ControlClient::connect(addr).await.unwrap();
    match c.authenticate(&Auth::Auto).await {
        Err(Error::CookieFile { detail, .. }) => assert!(detail.contains("5 bytes")),
        other => panic!("expected CookieFile, got {other:?}"),
    }
}
