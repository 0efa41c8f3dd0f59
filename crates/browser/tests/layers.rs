//! The browser crate's modules form layers: no module imports (with `use crate::...`) a module
//! that imports it back, directly or through others. Native only: it reads the sources.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name -> modules it names in `use crate::` lines (`use crate::{a, b::c}` included).
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).expect("a readable source file");
        let mut uses = BTreeSet::new();
        for line in text.lines() {
            let line = line.trim();
            let Some(rest) = line
                .strip_prefix("use crate::")
                .or_else(|| line.strip_prefix("pub use crate::"))
                .or_else(|| line.strip_prefix("pub(crate) use crate::"))
            else {
                continue;
            };
            let rest = rest.trim_start_matches('{');
            for part in rest.split(',') {
                let module: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !module.is_empty() && module != name {
                    uses.insert(module);
                }
            }
        }
        graph.insert(name, uses);
    }
    graph
}

fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_owned()];
    while let Some(m) = stack.pop() {
        if m == to {
            return true;
        }
        if seen.insert(m.clone()) {
            stack.extend(graph.get(&m).into_iter().flatten().cloned());
        }
    }
    false
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let graph = imports();
    assert!(graph.contains_key("driver") && graph.contains_key("api"));
    let mut cycles = Vec::new();
    for (module, uses) in &graph {
        for used in uses {
            if reaches(&graph, used, module) {
                cycles.push(format!("{module} -> {used} -> ... -> {module}"));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

#[test]
fn the_wrappers_know_nothing_of_the_driver() {
    let graph = imports();
    for wrapper in ["bridge", "link", "codes", "timer", "views", "events"] {
        assert!(
            !reaches(&graph, wrapper, "driver"),
            "{wrapper} reaches the driver: {:?}",
            graph.get(wrapper)
        );
    }
}
