//! The daemon's layering, checked over its own source: every module is assigned a layer,
//! no module names one in a higher layer, and the modules import each other without a
//! cycle. ARCHITECTURE.md ("Layers") draws the same table; this test is what keeps it true.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top to bottom. A module may name modules of its own layer or below, never above; within
/// a layer the imports must still form no cycle. (The core operations live in their own
/// crate, `lockbox-core`, which cannot name any of these.)
const LAYERS: &[(&str, &[&str])] = &[
    ("composition root", &["lib", "serve"]),
    (
        "transports",
        &[
            "http",
            "docker",
            "docker_request",
            "docker_events",
            "listen",
        ],
    ),
    ("authorization gate", &["gate", "node_gate"]),
    (
        "features",
        &[
            "agent",
            "workloads",
            "services",
            "placement",
            "revocation",
            "cluster",
            "backup",
            "templating",
            "volumes",
            "policy",
            "confine",
        ],
    ),
    (
        "support",
        &[
            "body", "identity", "peers", "error", "paths", "harden", "ops", "refusals", "budget",
        ],
    ),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

/// The top-level module a source file belongs to (`cluster/join.rs` → `cluster`).
fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("non-empty");
    let name = first.as_os_str().to_string_lossy().to_string();
    name.trim_end_matches(".rs").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Strips `//` comments (doc comments name modules in prose, which is no dependency).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module named after `crate::`, including each top-level name inside
/// `crate::{a, b::{…}}` groups.
fn crate_refs(code: &str) -> BTreeSet<String> {
    fn ident(s: &str) -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    }
    let mut out = BTreeSet::new();
    let mut at = 0;
    while let Some(i) = code[at..].find("crate::") {
        let begin = at + i;
        let start = begin + "crate::".len();
        at = start;
        let before = code[..begin].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `lockbox_crate::` and the like
        }
        let rest = &code[start..];
        if let Some(group) = rest.strip_prefix('{') {
            // Split the group's top level at commas; nested groups belong to their item.
            let mut depth = 0usize;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.insert(ident(&item));
        } else {
            out.insert(ident(rest));
        }
    }
    out.remove("");
    out
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| top_module(&src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let m = top_module(&src, f);
        let text = std::fs::read_to_string(f).expect("read source");
        let deps = crate_refs(&code_of(&text))
            .into_iter()
            .filter(|d| modules.contains(d) && *d != m)
            .collect::<BTreeSet<_>>();
        graph.entry(m).or_default().extend(deps);
    }
    graph
}

#[test]
fn every_module_has_a_layer() {
    let missing: Vec<String> = module_graph()
        .keys()
        .filter(|m| layer_of(m).is_none())
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a layer (add them to LAYERS here and to ARCHITECTURE.md): {missing:?}"
    );
}

#[test]
fn no_module_names_a_higher_layer() {
    let mut upward = Vec::new();
    for (from, deps) in module_graph() {
        let Some(lf) = layer_of(&from) else { continue };
        for to in deps {
            if let Some(lt) = layer_of(&to)
                && lt < lf
            {
                upward.push(format!(
                    "{from} ({}) → {to} ({})",
                    LAYERS[lf].0, LAYERS[lt].0
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run up the layers: {upward:#?}"
    );
}

#[test]
fn modules_import_each_other_without_a_cycle() {
    let graph = module_graph();
    // Depth-first search with colours; the first back edge found is reported as the cycle.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(m.to_string(), 1);
        path.push(m.to_string());
        for d in graph.get(m).into_iter().flatten() {
            match state.get(d).copied().unwrap_or(0) {
                1 => {
                    let i = path.iter().position(|p| p == d).unwrap_or(0);
                    let mut cycle = path[i..].to_vec();
                    cycle.push(d.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(d, graph, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        if state.get(m).copied().unwrap_or(0) == 0 {
            let mut path = Vec::new();
            if let Some(cycle) = visit(m, &graph, &mut state, &mut path) {
                panic!("import cycle: {}", cycle.join(" → "));
            }
        }
    }
}

/// The parser itself: a group import names each of its top-level modules.
#[test]
fn crate_refs_reads_groups_and_paths() {
    let code = "use crate::{a, b::{c, d}, e::F};\nlet x = crate::g::h();\nuse lockbox_crate::z;";
    let got: Vec<String> = crate_refs(code).into_iter().collect();
    assert_eq!(got, ["a", "b", "e", "g"]);
}
