//! Any text, however broken, parses to a template or an error, and any template runs to
//! output or an error: never a panic or a stack overflow (templated secrets are rendered
//! inside the daemon).
use lockbox_gotemplate::{Funcs, MissingKey, Template};
use proptest::prelude::*;
use serde_json::json;

/// Pieces that make near-templates more often than random characters do.
const PIECES: &[&str] = &[
    "{{",
    "}}",
    "{{- ",
    " -}}",
    "{{/*",
    "*/}}",
    ".",
    ".A",
    ".B.C",
    "$",
    "$x",
    " := ",
    " = ",
    ",",
    "|",
    "(",
    ")",
    " ",
    "\n",
    "if",
    "else",
    "end",
    "range",
    "with",
    "define",
    "template",
    "block",
    "break",
    "continue",
    "nil",
    "true",
    "\"s\"",
    "`r`",
    "'c'",
    "1",
    "-2",
    "3.5",
    "0x1F",
    "printf",
    "\"%d %s %v %q %5.2f %x %[2]s %*d\"",
    "index",
    "slice",
    "len",
    "and",
    "or",
    "not",
    "eq",
    "lt",
    "print",
    "println",
    "json",
    "split",
    "join",
    "pad",
    "truncate",
    "upper",
    "title",
    "html",
    "js",
    "urlquery",
    "call",
    "text",
    "é",
];

fn data() -> serde_json::Value {
    json!({"A": "a", "B": {"C": [1, 2.5, "x", null, {"k": "v"}]}, "N": 3, "L": {"k": "v"}})
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn never_panics(parts in prop::collection::vec(prop::sample::select(PIECES), 0..40)) {
        let src: String = parts.concat();
        let funcs = Funcs::docker();
        if let Ok(t) = Template::parse(&src, &funcs) {
            let _ = t.execute(&data(), &funcs);
            let _ = t.missing_key(MissingKey::Error).execute(&data(), &funcs);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,60}") {
        let funcs = Funcs::docker();
        if let Ok(t) = Template::parse(&src, &funcs) {
            let _ = t.execute(&data(), &funcs);
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_an_overflow() {
    let funcs = Funcs::builtin();
    let src = format!("{{{{{}1{}}}}}", "(".repeat(10_000), ")".repeat(10_000));
    let e = Template::parse(&src, &funcs).unwrap_err().to_string();
    assert!(e.contains("nesting deeper than 100"), "{e}");
    let src = format!("{}x{}", "{{if 1}}".repeat(5_000), "{{end}}".repeat(5_000));
    assert!(Template::parse(&src, &funcs).is_err());
    let ok = format!("{}x{}", "{{if 1}}".repeat(50), "{{end}}".repeat(50));
    assert_eq!(
        Template::parse(&ok, &funcs)
            .unwrap()
            .execute(&json!({}), &funcs)
            .unwrap(),
        "x"
    );
}
