use super::*;

fn cfg(dir: &Path, extra: &str) -> Result<Config> {
    let key = dir.join("key");
    std::fs::write(&key, b"x").unwrap();
    let text = format!(
        "[node]\nname = \"n1\"\ndata_dir = \"{d}/data\"\n[service]\nmaster_key = \"{k}\"\n\
         [target]\nurl = \"tcp://127.0.0.1:8080\"\n{extra}",
        d = dir.display(),
        k = key.display()
    );
    let p = dir.join("c.toml");
    std::fs::write(&p, text).unwrap();
    Config::load(&p)
}

#[test]
fn minimal_config_gets_defaults() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path(), "").unwrap();
    assert!(c.pow.enabled);
    assert_eq!(c.service.virtual_port, 80);
    assert_eq!(
        c.target_url().unwrap(),
        TargetUrl::Tcp {
            host: "127.0.0.1".into(),
            port: 8080
        }
    );
}

#[test]
fn tor_debug_log_takes_severities_only() {
    let d = tempfile::tempdir().unwrap();
    for ok in [
        "[rend]info",
        "info",
        "[rend,circ]debug notice",
        "info-err",
        "[~net]info",
    ] {
        let c = cfg(d.path(), &format!("[tor]\ndebug_log = \"{ok}\"\n"));
        assert!(c.is_ok(), "{ok}: {:?}", c.err());
    }
    for bad in [
        "info file /tmp/x",
        "[rend]info stdout",
        "",
        "[]info",
        "[rend]loud",
        "[rend info",
        "info-notice-err",
        "[REND]info",
    ] {
        let e = cfg(d.path(), &format!("[tor]\ndebug_log = \"{bad}\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tor.debug_log"), "{bad}: {e}");
    }
}

#[test]
fn errors_name_the_key() {
    let d = tempfile::tempdir().unwrap();
    let e = cfg(d.path(), "[proxy]\nmax_conections = 5\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("max_conections") && e.contains("unknown field"),
        "{e}"
    );
    let e = cfg(d.path(), "[proxy]\nproxy_protocol = \"v3\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("proxy.proxy_protocol"), "{e}");
    let e = cfg(d.path(), "[tor]\nextra_torrc = [\"DataDirectory /x\"]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("set by RustBalance"), "{e}");
    let e = cfg(d.path(), "[admin]\nlisten = \"8.8.8.8:80\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("admin.listen"), "{e}");
    let e = cfg(d.path(), "[proxy]\nlisten = \"127.0.0.1:99999\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("listen"), "{e}");
}

/// Fleet PoW is off by default, and asking for it where `ADD_ONION` with PoW cannot work
/// is an error naming the key and the conflict (not a silent fallback).
#[test]
fn fleet_pow_is_opt_in_and_refused_where_it_cannot_work() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("secret"), [7u8; 32]).unwrap();
    let cluster = |extra: &str, rest: &str| {
        format!(
            "[cluster]\nsecret_file = \"{}/secret\"\nlisten = \"127.0.0.1:7946\"\n{extra}{rest}",
            d.path().display()
        )
    };
    let c = cfg(d.path(), &cluster("", "")).unwrap();
    assert!(!c.cluster.as_ref().unwrap().fleet_pow);
    let c = cfg(
        d.path(),
        &cluster("fleet_pow = true\nfleet_pow_min_effort = 25\n", ""),
    )
    .unwrap();
    assert_eq!(c.cluster.as_ref().unwrap().fleet_pow_min_effort, 25);
    for (rest, why) in [
        ("[pow]\nenabled = false\n", "[pow] enabled"),
        ("[proxy]\nexport_circuit_id = true\n", "export_circuit_id"),
    ] {
        let e = cfg(d.path(), &cluster("fleet_pow = true\n", rest))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster.fleet_pow") && e.contains(why), "{e}");
    }
    let e = cfg(
        d.path(),
        &cluster("fleet_pow = true\nfleet_pow_min_effort = 10001\n", ""),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("10000"), "{e}");
}

#[test]
fn hsdir_check_interval_defaults_by_network_and_is_bounded() {
    use crate::cluster::Timers;
    use std::time::Duration;
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("secret"), [7u8; 32]).unwrap();
    let cluster = |extra: &str| {
        format!(
            "[cluster]\nsecret_file = \"{}/secret\"\nlisten = \"127.0.0.1:7946\"\n{extra}",
            d.path().display()
        )
    };
    let c = cfg(d.path(), &cluster("")).unwrap();
    let section = c.cluster.as_ref().unwrap();
    assert_eq!(section.hsdir_check_secs, None);
    assert_eq!(
        Timers::from_config(section, false).hsdir_check,
        Duration::from_secs(600)
    );
    assert_eq!(
        Timers::from_config(section, true).hsdir_check,
        Duration::from_secs(20)
    );
    let c = cfg(d.path(), &cluster("hsdir_check_secs = 45\n")).unwrap();
    assert_eq!(
        Timers::from_config(c.cluster.as_ref().unwrap(), true).hsdir_check,
        Duration::from_secs(45)
    );
    let e = cfg(d.path(), &cluster("hsdir_check_secs = 5\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cluster.hsdir_check_secs"), "{e}");
    // The single-node switch: on by default, 30 s (10 s in the lab), bounded below.
    assert!(section.solo);
    let t = Timers::from_config(section, false).solo;
    assert_eq!(
        (t.alone_after, t.drain),
        (Duration::from_secs(30), Duration::from_secs(30))
    );
    let t = Timers::from_config(section, true).solo;
    assert_eq!(
        (t.alone_after, t.drain),
        (Duration::from_secs(10), Duration::from_secs(10))
    );
    let c = cfg(
        d.path(),
        &cluster("solo_after_secs = 6\nsolo_drain_secs = 7\n"),
    )
    .unwrap();
    let t = Timers::from_config(c.cluster.as_ref().unwrap(), true).solo;
    assert_eq!(
        (t.alone_after, t.drain),
        (Duration::from_secs(6), Duration::from_secs(7))
    );
    let e = cfg(d.path(), &cluster("solo_after_secs = 1\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cluster.solo_after_secs"), "{e}");
}

#[test]
fn stream_and_intro_limits_are_checked() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path(), "").unwrap();
    assert_eq!(c.proxy.head_timeout_secs, 20);
    assert_eq!(c.proxy.max_streams_per_circuit, 128);
    assert!(c.proxy.close_circuit_over_max_streams);
    assert_eq!(c.intro_dos.enabled, None);
    for (extra, key) in [
        (
            "[proxy]\nhead_timeout_secs = 0\n",
            "proxy.head_timeout_secs",
        ),
        (
            "[proxy]\nmax_streams_per_circuit = 70000\n",
            "proxy.max_streams_per_circuit",
        ),
        (
            "[intro_dos]\nrate_per_sec = 300\n",
            "intro_dos.burst_per_sec",
        ),
        (
            "[tor]\nextra_torrc = [\"HiddenServiceMaxStreams 5\"]\n",
            "proxy.max_streams_per_circuit",
        ),
    ] {
        let e = cfg(d.path(), extra).unwrap_err().to_string();
        assert!(e.contains(key), "{extra}: {e}");
    }
}

#[test]
fn target_urls() {
    let d = tempfile::tempdir().unwrap();
    let mut c = cfg(d.path(), "").unwrap();
    for (u, ok) in [
        ("tcp://localhost:80", true),
        ("tcp://[::1]:80", true),
        (
            "onion://25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid.onion:80",
            true,
        ),
        ("onion://abc.onion:80", false),
        ("http://x:80", false),
        ("tcp://x", false),
        ("tcp://x:0", false),
    ] {
        c.target.as_mut().unwrap().url = u.into();
        assert_eq!(c.target_url().is_ok(), ok, "{u}");
    }
}

#[test]
fn tor_instances_turbo_mode_is_checked() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("secret"), [7u8; 32]).unwrap();
    let cluster = format!(
        "[cluster]\nsecret_file = \"{}/secret\"\nlisten = \"127.0.0.1:7946\"\n",
        d.path().display()
    );
    let c = cfg(d.path(), &format!("[tor]\ninstances = 3\n{cluster}")).unwrap();
    assert_eq!(c.tor.instance_count(true, false), 3);
    // Where several tors cannot work, one runs whatever the key says.
    assert_eq!(c.tor.instance_count(false, false), 1);
    assert_eq!(c.tor.instance_count(true, true), 1);
    // Unset: from the core count, 1 to 4.
    let auto = cfg(d.path(), &cluster)
        .unwrap()
        .tor
        .instance_count(true, false);
    assert!((1..=4).contains(&auto), "{auto}");
    let err = |extra: &str| cfg(d.path(), extra).unwrap_err().to_string();
    for bad in ["0", "9"] {
        let e = err(&format!("[tor]\ninstances = {bad}\n{cluster}"));
        assert!(e.contains("tor.instances") && e.contains("1..8"), "{e}");
    }
    let e = err("[tor]\ninstances = 2\n");
    assert!(
        e.contains("tor.instances") && e.contains("[cluster]"),
        "{e}"
    );
    let e = err(&format!(
        "[proxy]\nexport_circuit_id = true\n[tor]\ninstances = 2\n{cluster}"
    ));
    assert!(e.contains("export_circuit_id"), "{e}");
    // One tor is always fine.
    cfg(d.path(), "[tor]\ninstances = 1\n").unwrap();
}
