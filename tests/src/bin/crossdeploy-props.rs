//! The property targets of `crossdeploy_local::props`, run for many cases each with figures
//! (`./scripts/fuzz`): cases and time per target, and the peak a parse allocated.
//!
//! Usage: crossdeploy-props [--cases N]   (N per target; default 100 000)

use crossdeploy_local::props::{peak_of, targets, CountingAlloc};
use std::time::Instant;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cases: u32 = args
        .iter()
        .position(|a| a == "--cases")
        .and_then(|i| args.get(i + 1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(100_000);
    println!("{:<34} {:>10} {:>10} {:>12}", "target", "cases", "time", "cases/s");
    let (mut total, started, mut failed) = (0u64, Instant::now(), Vec::new());
    for target in targets() {
        let t = Instant::now();
        let result = (target.run)(cases, peak_of);
        let secs = t.elapsed().as_secs_f64();
        println!("{:<34} {:>10} {:>9.1}s {:>12.0}", target.name, cases, secs, f64::from(cases) / secs.max(1e-9));
        total += u64::from(cases);
        if let Err(e) = result {
            failed.push(format!("{}: {e}", target.name));
        }
    }
    println!("{:<34} {:>10} {:>9.1}s", "all", total, started.elapsed().as_secs_f64());
    if !failed.is_empty() {
        for f in &failed {
            println!("\nFAILED {f}");
        }
        std::process::exit(1);
    }
}
