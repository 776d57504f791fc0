//! Property tests over every parser of outside input, a bounded number of cases each (see
//! `crossdeploy_local::props`; `./scripts/fuzz` runs a million), with what each parse allocates
//! bounded by the size of its input.

use crossdeploy_local::props::{peak_of, targets, CountingAlloc};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Cases per target here (`PROPTEST_CASES` raises it).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256)
}

#[test]
fn every_parser_of_outside_input_reads_valid_inputs_and_refuses_mutated_ones_without_a_panic() {
    let mut failures = Vec::new();
    for target in targets() {
        if let Err(e) = (target.run)(cases(), peak_of) {
            failures.push(format!("{}: {e}", target.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
