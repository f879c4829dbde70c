//! Every fuzz target (src/fuzz.rs) on what cargo-fuzz found (fuzz/regressions, each a
//! crash once, fixed since), on the captured traffic in tests/data, and on a bounded
//! run of pseudo-random inputs: in the normal test suite, without cargo-fuzz.

mod common;

use common::pcap;
use mcgate::fuzz::TARGETS;
use std::path::Path;

fn target(name: &str) -> fn(&[u8]) {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f).unwrap_or_else(|| panic!("no target {name}"))
}

#[test]
fn regressions_found_by_fuzzing_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut n = 0;
    for t in std::fs::read_dir(&dir).unwrap() {
        let t = t.unwrap();
        let f = target(&t.file_name().to_string_lossy());
        for case in std::fs::read_dir(t.path()).unwrap() {
            f(&std::fs::read(case.unwrap().path()).unwrap());
            n += 1;
        }
    }
    assert!(n >= 2, "the regressions are missing");
}

#[test]
fn captured_traffic_and_every_truncation_of_it() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for entry in std::fs::read_dir(data).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "pcap") {
            continue;
        }
        for frame in pcap(&path.file_name().unwrap().to_string_lossy()) {
            let payload = &frame[14..];
            for n in 0..=payload.len() {
                for (_, f) in TARGETS.iter().filter(|(n, _)| !["policy", "config"].contains(n)) {
                    f(&payload[..n]);
                }
            }
        }
    }
}

#[test]
fn pseudo_random_inputs() {
    // xorshift: the same inputs every run
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for (name, f) in TARGETS {
        for _ in 0..2000 {
            let len = (next() % 512) as usize;
            let input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            f(&input);
        }
        eprintln!("{name}: 2000 inputs");
    }
}
