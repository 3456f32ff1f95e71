//! `train --time-budget`: the learning rate decays over the budget, and the run ends there
//! validated and finished instead of running its epochs.

mod common;

#[test]
fn a_time_budget_ends_the_run_validated_with_the_rate_decayed() {
    common::one_thread();
    let work = common::tempdir();
    let out = work.path().join("model");
    let train = common::fixture_notebooks("train");
    let valid = common::fixture_notebooks("valid");
    let started = std::time::Instant::now();
    // No --epochs: a time budget alone lets the run take as many as fit.
    common::run_ok(&[
        "train",
        common::path_str(&train),
        "--out",
        common::path_str(&out),
        "--valid",
        common::path_str(&valid),
        "--time-budget",
        "4s",
        "--vocab-size",
        "400",
        "--embed-dim",
        "64",
        "--hidden-size",
        "128",
        "--batch-size",
        "16",
        "--seq-len",
        "64",
        "--warmup-steps",
        "20",
        "--lr",
        "0.006",
        "--cpu",
        "--quiet",
    ]);
    let wall = started.elapsed().as_secs_f64();

    let cfg = common::config_json(&out);
    let t = &cfg["training"];
    assert_eq!(t["finished"], true, "{t}");
    assert_eq!(t["time_budget_secs"].as_f64(), Some(4.0));
    let elapsed = t["elapsed_secs"].as_f64().expect("elapsed_secs");
    assert!(
        (4.0..wall).contains(&elapsed),
        "elapsed {elapsed} s, wall {wall} s"
    );
    let epochs_done = t["epoch"].as_u64().expect("epoch");
    assert!(
        t["epochs"].as_u64().is_some_and(|e| e > epochs_done + 10),
        "{epochs_done} epochs of {}: not stopped by the budget",
        t["epochs"]
    );
    let steps = t["global_step"].as_u64().expect("global_step");

    let rows = common::metrics_rows(&out);
    let last = rows.last().expect("metrics rows");
    assert_eq!(last["kind"], "valid");
    assert_eq!(
        last["step"],
        steps.to_string(),
        "the final weights are validated"
    );
    let loss: f64 = last["valid_loss"].parse().expect("valid loss");
    assert_eq!(
        t["last_valid"]["loss"]
            .as_f64()
            .map(|l| (l - loss).abs() < 1e-4),
        Some(true)
    );
    // The rate reaches its floor (10% of --lr 0.006) as the budget runs out.
    let lrs: Vec<f64> = rows
        .iter()
        .filter(|r| r["kind"] == "train")
        .map(|r| r["lr"].parse().expect("lr"))
        .collect();
    let final_lr = *lrs.last().expect("train rows");
    assert!((final_lr - 0.0006).abs() < 0.0001, "final lr {final_lr}");
    // And the run learned something: the untrained model's loss is the first row.
    let untrained: f64 = rows[0]["valid_loss"].parse().expect("valid loss");
    assert!(loss < untrained - 1.0, "valid loss {untrained} -> {loss}");
}
