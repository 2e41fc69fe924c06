//! Go's `text/template` language over `serde_json::Value`, as the docker CLI uses it for
//! `--format`: actions, pipelines, `if`/`else if`/`range`/`with`/`break`/`continue`,
//! variables, `define`/`template`/`block`, comments and `{{-`/`-}}` trimming; Go's
//! predefined functions (`printf` with Go's verbs, `index`, `slice`, `len`, `eq`…, `and`,
//! `or`, `not`, `print`, `println`, `html`, `js`, `urlquery`); and docker's own (`json`,
//! `join`, `split`, `lower`, `upper`, `title`, `pad`, `truncate`).
//!
//! Data is JSON: objects behave as Go maps (`map[string]interface {}`), so `{{.Missing}}`
//! prints `<no value>` (or fails, with [`MissingKey::Error`]) and a whole object prints as
//! `map[k:v]`; [`bytes_value`] makes a Go `[]byte`. Docker's own objects are Go structs,
//! which print as `{v1 v2}` (or through a `String()` method): those differ from the docker
//! CLI.
//!
//! ```
//! use lockbox_gotemplate::{Funcs, Template};
//! let funcs = Funcs::docker();
//! let t = Template::parse(r#"{{range $i, $v := .L}}{{if $i}},{{end}}{{upper $v}}{{end}}"#, &funcs).unwrap();
//! let out = t.execute(&serde_json::json!({"L": ["a", "b"]}), &funcs).unwrap();
//! assert_eq!(out, "A,B");
//! ```
mod ast;
mod docker;
mod exec;
mod funcs;
mod lexer;
mod literal;
mod parse;
mod printf;
mod table;
mod value;

pub use funcs::{Args, Arity, FuncBody, FuncError, Funcs, MethodBody};
pub use table::{ListFormat, tabwriter};
pub use value::{bytes_value, omitted_value};

/// What a missing map key gives (Go's `missingkey=` option).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// The invalid value: prints `<no value>`.
    #[default]
    Default,
    /// The map's zero value.
    Zero,
    /// An error: `map has no entry for key "K"`.
    Error,
    /// The objects stand for a Go struct of this type (docker's listing contexts, such as
    /// `*secret.secretContext`): `can't evaluate field K in type T`.
    Field(String),
}

/// A template error, worded as Go words it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("template: {name}:{line}: {message}")]
    Parse {
        name: String,
        line: usize,
        message: String,
    },
    #[error("template: {name}:{line}:{column}: executing {name:?} at <{context}>: {message}")]
    Exec {
        name: String,
        line: usize,
        /// The byte offset in the line, from 0, as Go counts it.
        column: usize,
        /// The node that failed, as written.
        context: String,
        message: String,
    },
}

/// A parsed template.
pub struct Template {
    name: String,
    src: String,
    tree: parse::Tree,
    missing_key: MissingKey,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("name", &self.name)
            .field("src", &self.src)
            .finish()
    }
}

impl Template {
    /// Parses an unnamed template (docker's are unnamed: errors say `template: :1:…`).
    /// Every function it calls must be in `funcs`.
    pub fn parse(src: &str, funcs: &Funcs) -> Result<Self, Error> {
        Self::parse_named("", src, funcs)
    }

    pub fn parse_named(name: &str, src: &str, funcs: &Funcs) -> Result<Self, Error> {
        let line = |pos: usize| src[..pos.min(src.len())].matches('\n').count() + 1;
        let tokens = lexer::lex(src).map_err(|e| Error::Parse {
            name: name.to_string(),
            line: line(e.pos),
            message: e.msg,
        })?;
        let tree = parse::parse(tokens, &|f| funcs.contains(f)).map_err(|e| Error::Parse {
            name: name.to_string(),
            line: line(e.pos),
            message: e.msg,
        })?;
        Ok(Self {
            name: name.to_string(),
            src: src.to_string(),
            tree,
            missing_key: MissingKey::Default,
        })
    }

    /// Sets what a missing map key gives.
    pub fn missing_key(mut self, missing_key: MissingKey) -> Self {
        self.missing_key = missing_key;
        self
    }

    /// Runs the template over `data`.
    pub fn execute(&self, data: &serde_json::Value, funcs: &Funcs) -> Result<String, Error> {
        let mut out = String::new();
        self.execute_into(&mut out, data, funcs)?;
        Ok(out)
    }

    /// Runs the template, appending to `out`; on an error `out` keeps what was written
    /// before it, as Go's writer does.
    pub fn execute_into(
        &self,
        out: &mut String,
        data: &serde_json::Value,
        funcs: &Funcs,
    ) -> Result<(), Error> {
        exec::Exec::new(
            &self.tree,
            funcs,
            &self.src,
            &self.name,
            &self.missing_key,
            out,
        )
        .run(data)
    }
}
