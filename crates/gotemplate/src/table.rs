//! A `--format` value for a listing, as the docker CLI's `formatter.Context` takes it: a
//! leading `table` asks for a header row and aligned columns, `\t` and `\n` written as
//! two characters become a tab and a newline, and the header is the same template run over
//! a map of column names with [`Funcs::docker_header`].
use std::io::Write as _;

use serde_json::Value;

use crate::{Error, Funcs, MissingKey, Template};

/// A parsed listing format.
#[derive(Debug)]
pub struct ListFormat {
    table: bool,
    template: Template,
}

impl ListFormat {
    /// Parses `format` (`table …` or a plain template). `funcs` must know every function
    /// the rows and the header use; `row_type` names the Go struct docker would have (for
    /// the error on an unknown field), or None for maps.
    pub fn parse(format: &str, funcs: &Funcs, row_type: Option<&str>) -> Result<Self, Error> {
        let table = format.starts_with("table");
        let body = if table {
            &format["table".len()..]
        } else {
            format
        };
        let body = body
            .trim_matches(' ')
            .replace("\\t", "\t")
            .replace("\\n", "\n");
        let missing = match row_type {
            Some(t) => MissingKey::Field(t.to_string()),
            None => MissingKey::Default,
        };
        Ok(Self {
            table,
            template: Template::parse(&body, funcs)?.missing_key(missing),
        })
    }

    pub fn is_table(&self) -> bool {
        self.table
    }

    /// Renders the rows, each followed by a newline; a table gets the header (the template
    /// over `header`, a map from field name to column name, with `header_funcs`) and goes
    /// through Go's tabwriter as docker sets it (minwidth 10, tabwidth 1, padding 3).
    pub fn render(
        &self,
        rows: &[Value],
        funcs: &Funcs,
        header: &Value,
        header_funcs: &Funcs,
    ) -> Result<String, Error> {
        let mut body = String::new();
        for row in rows {
            self.template.execute_into(&mut body, row, funcs)?;
            body.push('\n');
        }
        if !self.table {
            return Ok(body);
        }
        let mut head = String::new();
        // docker ignores a failing header: whatever was written before the failure stays.
        let _ = self.template.execute_into(&mut head, header, header_funcs);
        let mut tw = tabwriter(Vec::new());
        let _ = tw.write_all(head.as_bytes());
        let _ = tw.write_all(b"\n");
        let _ = tw.write_all(body.as_bytes());
        let bytes = tw.into_inner().unwrap_or_default();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Go's `tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)`, as docker makes its tables. Go makes a
/// column max(minwidth, widest cell + padding) wide; this crate max(minwidth, widest cell)
/// + padding, so its minwidth is Go's less the padding.
pub fn tabwriter<W: std::io::Write>(w: W) -> tabwriter::TabWriter<W> {
    tabwriter::TabWriter::new(w).minwidth(10 - 3).padding(3)
}

/// docker's `SubHeaderContext.Label`: the column name for `{{.Label "k"}}` is the key's last
/// dot-separated part with `-` and `_` as spaces.
pub(crate) fn header_label(key: &str) -> String {
    key.rsplit('.')
        .next()
        .unwrap_or(key)
        .replace(['-', '_'], " ")
}
