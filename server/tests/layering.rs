//! The module map stays acyclic: reads the server crate's sources and checks that the top-level
//! modules (`kvs`, `consumers`, `kds`, `rest_json`, ...) import each other without a cycle, and
//! that the video API never names the consumers built on it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to: `kvs/playback/mod.rs` -> `kvs`.
fn top_module(root: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(root).expect("under the root");
    let first = relative.components().next().expect("a component").as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::<module>` a file names, outside comments.
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            // `crate::{a, b}` groups: the names inside the braces.
            if name.is_empty() && after.starts_with('{') {
                let group = after[1..].split('}').next().unwrap_or_default();
                out.extend(group.split(',').filter_map(|part| part.trim().split("::").next().map(str::to_string)));
            } else if !name.is_empty() {
                out.insert(name);
            }
            rest = after;
        }
    }
    out.retain(|name| !name.is_empty() && name != "self");
    out
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let module = top_module(&root, &file);
        let text = std::fs::read_to_string(&file).expect("readable source");
        let uses = graph.entry(module.clone()).or_default();
        uses.extend(crate_references(&text).into_iter().filter(|other| *other != module));
    }
    graph
}

/// A cycle through `start`, if there is one.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                return Some([path.clone(), vec![start.to_string()]].concat());
            }
            if seen.insert(next.clone()) {
                stack.push((next.clone(), [path.clone(), vec![next.clone()]].concat()));
            }
        }
    }
    None
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let graph = module_graph();
    assert!(graph.len() > 10, "the scan found the modules: {graph:?}");
    let cycles: Vec<String> = graph.keys().filter_map(|m| cycle_from(&graph, m)).map(|c| c.join(" -> ")).collect();
    assert!(cycles.is_empty(), "import cycles between modules:\n{}", cycles.join("\n"));
}

#[test]
fn the_video_api_never_names_the_consumers() {
    let graph = module_graph();
    assert!(!graph["kvs"].contains("consumers"), "kvs imports: {:?}", graph["kvs"]);
    assert!(graph["consumers"].contains("kvs"), "the consumers are built on kvs: {:?}", graph["consumers"]);
}

#[test]
fn references_are_read_from_paths_and_groups_but_not_comments() {
    let text = "use crate::kvs::KvsCtx;\nuse crate::{error::ApiError, rest_json};\n// crate::consumers\n";
    let names: Vec<String> = crate_references(text).into_iter().collect();
    assert_eq!(names, ["error", "kvs", "rest_json"]);
}
