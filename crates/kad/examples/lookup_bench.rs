//! Lookup benchmark: builds simulated networks of 100, 1,000 and 10,000 nodes and prints, beside
//! log2(N), the rounds and messages per lookup, the share of exact FIND_NODE results in a static
//! network and of successful FIND_VALUE lookups under 20% churn.
//!
//! ```text
//! cargo run --release -p onionmesh-kad --example lookup_bench [-- N...]
//! ```
use onionmesh_kad::sim::{percentile, Scenario};

#[allow(clippy::disallowed_methods)] // a benchmark times itself
fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100, 1_000, 10_000]
    } else {
        sizes
    };
    println!(
        "{:>6} {:>6} | {:>13} {:>15} {:>9} | {:>13} {:>15} {:>9} | {:>7}",
        "N",
        "log2 N",
        "FN rounds",
        "FN messages",
        "FN exact",
        "FV rounds",
        "FV messages",
        "FV found",
        "wall"
    );
    println!(
        "{:>6} {:>6} | {:>13} {:>15} {:>9} | {:>13} {:>15} {:>9} | {:>7}",
        "", "", "med / p95", "med / p95", "%", "med / p95", "med / p95", "% churn", "s"
    );
    for n in sizes {
        let started = std::time::Instant::now();
        let report = Scenario::new(n, n.clamp(1_000, 10_000), 42).run();
        let wall = started.elapsed().as_secs_f64();
        let s = &report.static_find_node;
        let c = &report.churn_find_value;
        println!(
            "{:>6} {:>6.1} | {:>6} / {:<4} {:>7} / {:<5} {:>9.2} | {:>6} / {:<4} {:>7} / {:<5} {:>9.2} | {:>7.1}",
            n,
            (n as f64).log2(),
            percentile(&s.rounds, 50),
            percentile(&s.rounds, 95),
            percentile(&s.requests, 50),
            percentile(&s.requests, 95),
            s.percent_ok(),
            percentile(&c.rounds, 50),
            percentile(&c.rounds, 95),
            percentile(&c.requests, 50),
            percentile(&c.requests, 95),
            c.percent_ok(),
            wall,
        );
        eprintln!(
            "    N={n}: {} FIND_NODE ({} unfinished), {} FIND_VALUE ({} unfinished); churn: {} left, {} joined; \
             stores {}/{}; {} frames ({} lost, {} MB), {} rejections, {:.0} virtual minutes",
            s.lookups,
            s.unfinished,
            c.lookups,
            c.unfinished,
            report.left,
            report.joined,
            report.publish_holders.0,
            report.publish_holders.1,
            report.stats.frames_delivered,
            report.stats.frames_lost,
            report.stats.bytes / 1_000_000,
            report.stats.rejections,
            report.virtual_time.as_millis() as f64 / 60_000.0,
        );
    }
}
