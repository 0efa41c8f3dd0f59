//! Acceptance at test size: 1,000 simulated nodes, 1,000 lookups per phase. The benchmark
//! (`cargo run --release -p onionmesh-kad --example lookup_bench`) runs the same scenario at
//! 100, 1,000 and 10,000 nodes and prints the figures.

use onionmesh_kad::sim::{percentile, Scenario};

#[test]
fn lookups_are_exact_when_static_and_find_values_under_churn() {
    let report = Scenario::new(1_000, 1_000, 7).run();
    let s = &report.static_find_node;
    let c = &report.churn_find_value;
    eprintln!(
        "static FIND_NODE: {:.2}% exact, rounds {}/{} messages {}/{} (median/p95); \
         churn FIND_VALUE: {:.2}% found, rounds {}/{} messages {}/{}; {} left, {} joined",
        s.percent_ok(),
        percentile(&s.rounds, 50),
        percentile(&s.rounds, 95),
        percentile(&s.requests, 50),
        percentile(&s.requests, 95),
        c.percent_ok(),
        percentile(&c.rounds, 50),
        percentile(&c.rounds, 95),
        percentile(&c.requests, 50),
        percentile(&c.requests, 95),
        report.left,
        report.joined,
    );
    assert_eq!(s.lookups, 1_000);
    assert_eq!(c.lookups, 1_000);
    assert_eq!(
        (report.left, report.joined),
        (200, 200),
        "20% churn each way"
    );
    assert!(
        s.percent_ok() >= 99.9,
        "FIND_NODE exactness {:.2}%",
        s.percent_ok()
    );
    assert!(
        c.percent_ok() >= 99.5,
        "FIND_VALUE success {:.2}%",
        c.percent_ok()
    );
    // Sanity: log2(1000) is about 10; lookups take a handful of rounds, not dozens.
    assert!(percentile(&s.rounds, 50) <= 6);
    assert!(percentile(&s.requests, 95) <= 60);
    assert!(report.publish_holders.0 > 0);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let a = Scenario::new(60, 40, 3).run();
    let b = Scenario::new(60, 40, 3).run();
    assert_eq!(a.static_find_node, b.static_find_node);
    assert_eq!(a.churn_find_value, b.churn_find_value);
    assert_eq!(a.stats, b.stats);
}
