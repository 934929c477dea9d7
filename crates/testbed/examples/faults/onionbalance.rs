//! The Onionbalance half of the faults benchmark: 3 instances in a loopback lab, an HSDir
//! restart and a silent instance.

use super::*;

pub(super) async fn onionbalance_part(a: &Args, work: &Path, out: &mut Value) -> Result<()> {
    let dir = lab_dir(work, "lab-ob")?;
    with_lab(&dir, Default::default(), progress, async |lab, started| {
        out["onionbalance"]["lab_usable_s"] = json!(secs(started.report.total));
        log("Onionbalance: 3 instances");
        let ob = OnionbalanceSetup::start(lab, "obf", 3, Duration::from_secs(180)).await?;
        let r = onionbalance_faults(a, lab, &ob, out).await;
        let _ = tokio::task::spawn_blocking(move || ob.stop()).await;
        r
    })
    .await
}

pub(super) async fn onionbalance_faults(
    a: &Args,
    lab: &Lab,
    ob: &OnionbalanceSetup,
    out: &mut Value,
) -> Result<()> {
    let took = ob
        .wait_master_reachable(lab, Duration::from_secs(600))
        .await?;
    out["onionbalance"]["reachable_after_start_s"] = json!(secs(took));
    let mut watch = LogWatch::new(ob.daemon().log_file());
    wait_ob_built_from(ob.daemon(), &mut watch, 3, Duration::from_secs(600)).await?;
    log(format!(
        "Onionbalance answering {:.1}s after its start, built from 3 instances",
        took.as_secs_f64()
    ));
    if a.runs("hsdir") {
        log("Onionbalance: fault hsdir");
        client_holds_all_instances(lab, ob).await?;
        let r = hsdir_restart(a, lab, &ob.master_url(), Some(ob)).await;
        record(out, "onionbalance", "hsdir", r)?;
    }
    if a.runs("silent") {
        log("Onionbalance: fault silent");
        let r = ob_silent(a, lab, ob).await;
        record(out, "onionbalance", "silent", r)?;
    }
    Ok(())
}

/// The lab client holds a descriptor of Onionbalance's as large as its last one built
/// from 3 instances (NEWNYM and fetch again): "We got 9 intros from 3 instances. We want
/// 6 intros ourselves (got: 6)" → 6.
pub(super) async fn client_holds_all_instances(lab: &Lab, ob: &OnionbalanceSetup) -> Result<()> {
    let mut watch = LogWatch::new(ob.daemon().log_file());
    watch.poll();
    let intros: usize = watch
        .lines
        .iter()
        .rev()
        .filter(|(_, l)| ob_instances(l) == Some(3))
        .find_map(|(_, l)| {
            let n = l.split("(got: ").nth(1)?.split(')').next()?;
            n.trim().parse().ok()
        })
        .context("no descriptor built from 3 instances in Onionbalance's log")?;
    let master = rustbalance_hs::OnionAddress::parse(ob.master_address())?;
    let (d, took) =
        refetch_until(lab, &master, LIVENESS, |d| d.intro_points.len() >= intros).await?;
    log(format!(
        "  the lab client holds Onionbalance's descriptor with {} intro points ({:.1}s)",
        d.intro_points.len(),
        took.as_secs_f64()
    ));
    Ok(())
}

/// One Onionbalance instance's tor SIGSTOPped: alive to the network (its descriptor at
/// the HSDirs, its intro circuits open), answering nothing.
pub(super) async fn ob_silent(a: &Args, lab: &Lab, ob: &OnionbalanceSetup) -> Result<Value> {
    let mut watch = LogWatch::new(ob.daemon().log_file());
    let inst = &ob.instances()[0];
    let name = inst.tor.name().to_string();
    let pid = inst.tor.process_id().pid;
    client_holds_all_instances(lab, ob).await?;
    let c = Clients::start(a, lab, &ob.master_url()).await;
    watch.poll();
    let mark = watch.mark();
    let stopped = Instant::now();
    let fault = c.now();
    signal(pid, "-STOP")?;
    log(format!("  instance {name}'s tor (pid {pid}) SIGSTOPped"));
    let d = watch_ob_drop(ob.daemon(), &mut watch, (mark, 3), stopped, a.ob_cap, |m| {
        log(format!("  {m}"))
    })
    .await;
    let on_clock = |t: Instant| (t - c.t0).as_secs_f64();
    let recovered = d.uploaded.map(on_clock);
    log(format!(
        "  Onionbalance uploaded without {name} at +{:?}s (cap {}s)",
        recovered.map(|x| x - fault),
        a.ob_cap.as_secs()
    ));
    let detail = json!({
        "silent": name,
        "built_from_2_s": d.built.map(|t| secs(t - stopped)),
        "cap_s": a.ob_cap.as_secs(),
    });
    let reaction = Reaction {
        fault,
        reacted: d.built.map(on_clock),
        recovered,
        detail,
    };
    let v = c.end(a, reaction).await;
    signal(pid, "-CONT")?;
    Ok(v)
}
