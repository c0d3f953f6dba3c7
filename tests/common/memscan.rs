//! Scans a process's whole readable address space (as root, through `/proc/PID/mem`) for
//! byte strings: the check behind "no copy of any secret stays in agent-run's memory".

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Needles must be at least this long; the scan indexes them by their first bytes.
pub const MIN_NEEDLE: usize = 8;

/// One needle found: which one, and the mapping it was found in.
#[derive(Debug)]
pub struct Hit {
    pub needle: usize,
    pub region: String,
}

/// Every occurrence of every needle in `pid`'s readable mappings.
pub fn scan(pid: i32, needles: &[Vec<u8>]) -> Vec<Hit> {
    let mut index: HashMap<[u8; MIN_NEEDLE], Vec<usize>> = HashMap::new();
    for (i, needle) in needles.iter().enumerate() {
        assert!(
            needle.len() >= MIN_NEEDLE,
            "needle {i} is shorter than {MIN_NEEDLE} bytes"
        );
        index
            .entry(needle[..MIN_NEEDLE].try_into().unwrap())
            .or_default()
            .push(i);
    }
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    let mem = File::open(format!("/proc/{pid}/mem")).expect("open /proc/PID/mem (needs root)");
    let mut hits = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let mut data = vec![0u8; (end - start) as usize];
        let Ok(n) = read_fully(&mem, &mut data, start) else {
            continue;
        };
        data.truncate(n);
        for pos in 0..data.len().saturating_sub(MIN_NEEDLE - 1) {
            let key: [u8; MIN_NEEDLE] = data[pos..pos + MIN_NEEDLE].try_into().unwrap();
            if let Some(candidates) = index.get(&key) {
                for &i in candidates {
                    if data[pos..].starts_with(&needles[i]) {
                        hits.push(Hit {
                            needle: i,
                            region: line.to_owned(),
                        });
                    }
                }
            }
        }
    }
    hits
}

fn read_fully(mem: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match mem.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(done)
}

pub fn assert_child_has_all(child: i32, values: &[String]) {
    let environ = std::fs::read(format!("/proc/{child}/environ")).unwrap();
    for (i, value) in values.iter().enumerate() {
        let found = environ.windows(value.len()).any(|w| w == value.as_bytes());
        assert!(found, "secret #{i} missing from the child's environment");
    }
}

/// `control` is something agent-run does hold (its own flag value): finding it proves the
/// scan really reads agent-run's memory.
pub fn assert_no_secret_in_memory(pid: i32, values: &[String], control: &str, when: &str) {
    let mut needles: Vec<Vec<u8>> = values.iter().map(|v| v.as_bytes().to_vec()).collect();
    needles.push(control.as_bytes().to_vec());
    let mut hits = scan(pid, &needles);
    let control_hits = hits.iter().filter(|h| h.needle == values.len()).count();
    assert!(
        control_hits > 0,
        "{when}: the scan did not even find the control string {control:?}"
    );
    hits.retain(|h| h.needle < values.len());
    let report: Vec<String> = hits
        .iter()
        .map(|h| {
            format!(
                "secret #{} ({} bytes) in {}",
                h.needle,
                values[h.needle].len(),
                h.region
            )
        })
        .collect();
    assert!(
        report.is_empty(),
        "{when}: agent-run's memory still holds secrets:\n{}",
        report.join("\n")
    );
}
