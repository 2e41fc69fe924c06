//! The function table: Go's predefined functions, and the way a caller adds its own
//! (`Funcs::insert`) and methods on objects (`Funcs::insert_method`, for `{{.Label "k"}}`).
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::printf::sprintf;
use crate::value::{as_bytes, byte_numbers, bytes_value, field, is_true, print, type_name};

/// Why a function failed. `Arg` blames one argument (Go reports it at that argument's
/// position); `Call` is reported as `error calling NAME: …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FuncError {
    Arg {
        index: usize,
        message: String,
    },
    /// The argument does not have the parameter's type (Go's name for it: `string`, `int`…).
    Type {
        index: usize,
        expected: String,
    },
    Call(String),
}

impl FuncError {
    /// A failure of the call itself.
    pub fn call(message: impl Into<String>) -> Self {
        Self::Call(message.into())
    }
}

/// How many arguments a function takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    Exact(usize),
    AtLeast(usize),
}

/// The arguments of one call. A value Go would call invalid (a missing map key) is `None`
/// inside; the typed accessors refuse it as Go does for a typed parameter.
pub struct Args<'a> {
    vals: &'a [Option<Value>],
}

impl<'a> Args<'a> {
    pub(crate) fn new(vals: &'a [Option<Value>]) -> Self {
        Self { vals }
    }

    pub fn len(&self) -> usize {
        self.vals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vals.is_empty()
    }

    /// The argument for an `interface{}` parameter: a missing value is nil.
    pub fn any(&self, i: usize) -> Value {
        self.vals.get(i).cloned().flatten().unwrap_or(Value::Null)
    }

    /// Every argument from `from` on, as `any`.
    pub fn rest(&self, from: usize) -> Vec<Value> {
        (from..self.len()).map(|i| self.any(i)).collect()
    }

    /// Whether the argument is Go's invalid value (a missing key), not even nil.
    pub fn is_invalid(&self, i: usize) -> bool {
        matches!(self.vals.get(i), Some(None))
    }

    fn typed(&self, i: usize, want: &str) -> Result<&'a Value, FuncError> {
        match self.vals.get(i) {
            Some(Some(v)) => Ok(v),
            _ => Err(Self::wrong(i, want, &Value::Null)),
        }
    }

    fn wrong(i: usize, want: &str, _: &Value) -> FuncError {
        FuncError::Type {
            index: i,
            expected: want.to_string(),
        }
    }

    /// A `string` parameter.
    pub fn str(&self, i: usize) -> Result<&'a str, FuncError> {
        let v = self.typed(i, "string")?;
        v.as_str().ok_or_else(|| Self::wrong(i, "string", v))
    }

    /// An `int` parameter.
    pub fn int(&self, i: usize) -> Result<i64, FuncError> {
        let v = self.typed(i, "int")?;
        v.as_i64().ok_or_else(|| Self::wrong(i, "int", v))
    }

    /// A `[]string` parameter.
    pub fn strings(&self, i: usize) -> Result<Vec<&'a str>, FuncError> {
        let v = self.typed(i, "[]string")?;
        match v {
            Value::Array(a) => a
                .iter()
                .map(|e| e.as_str().ok_or_else(|| Self::wrong(i, "[]string", v)))
                .collect(),
            Value::Null => Ok(Vec::new()),
            _ => Err(Self::wrong(i, "[]string", v)),
        }
    }
}

/// A function body.
pub type FuncBody = dyn Fn(&Args<'_>) -> Result<Value, FuncError> + Send + Sync;
/// A method body: the receiver (the object the field chain reached) and the arguments.
pub type MethodBody = dyn Fn(&Value, &Args<'_>) -> Result<Value, FuncError> + Send + Sync;

#[derive(Clone)]
pub(crate) struct Func {
    pub(crate) arity: Arity,
    pub(crate) body: Arc<FuncBody>,
}

#[derive(Clone)]
pub(crate) struct Method {
    pub(crate) arity: Arity,
    pub(crate) body: Arc<MethodBody>,
}

/// The functions a template may call, checked when it is parsed (as Go's `Funcs` before
/// `Parse`). Start from [`Funcs::builtin`] (Go's predefined functions) or
/// [`Funcs::docker`] (plus the docker CLI's), then add your own.
#[derive(Clone, Default)]
pub struct Funcs {
    funcs: HashMap<String, Func>,
    methods: HashMap<String, Method>,
}

impl std::fmt::Debug for Funcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.funcs.keys().collect();
        names.sort();
        f.debug_struct("Funcs").field("funcs", &names).finish()
    }
}

impl Funcs {
    /// Adds (or replaces) a function.
    pub fn insert<F>(&mut self, name: &str, arity: Arity, f: F) -> &mut Self
    where
        F: Fn(&Args<'_>) -> Result<Value, FuncError> + Send + Sync + 'static,
    {
        self.funcs.insert(
            name.to_string(),
            Func {
                arity,
                body: Arc::new(f),
            },
        );
        self
    }

    /// Adds a method: `{{.Name args…}}` on any object calls it (a method shadows a key of
    /// the same name, as in Go).
    pub fn insert_method<F>(&mut self, name: &str, arity: Arity, f: F) -> &mut Self
    where
        F: Fn(&Value, &Args<'_>) -> Result<Value, FuncError> + Send + Sync + 'static,
    {
        self.methods.insert(
            name.to_string(),
            Method {
                arity,
                body: Arc::new(f),
            },
        );
        self
    }

    pub fn contains(&self, name: &str) -> bool {
        self.funcs.contains_key(name)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Func> {
        self.funcs.get(name)
    }

    pub(crate) fn method(&self, name: &str) -> Option<&Method> {
        self.methods.get(name)
    }

    /// Go's predefined functions. `and` and `or` short-circuit in the executor; their
    /// entries here only make the names known.
    pub fn builtin() -> Self {
        let mut f = Self::default();
        let any = |a: &Args<'_>| Ok(a.any(0));
        f.insert("and", Arity::AtLeast(1), any);
        f.insert("or", Arity::AtLeast(1), any);
        f.insert("not", Arity::Exact(1), |a| {
            Ok(Value::Bool(!a.vals[0].as_ref().is_some_and(is_true)))
        });
        f.insert("len", Arity::Exact(1), |a| match a.any(0) {
            v if as_bytes(&v).is_some() => Ok(Value::from(as_bytes(&v).unwrap_or_default().len())),
            Value::String(s) => Ok(Value::from(s.len())),
            Value::Array(v) => Ok(Value::from(v.len())),
            Value::Object(m) => Ok(Value::from(m.len())),
            Value::Null => Err(FuncError::call("len of nil pointer")),
            v => Err(FuncError::call(format!("len of type {}", type_name(&v)))),
        });
        f.insert("index", Arity::AtLeast(1), index);
        f.insert("slice", Arity::AtLeast(1), slice);
        f.insert("print", Arity::AtLeast(0), |a| {
            Ok(Value::String(sprint(&a.rest(0))))
        });
        f.insert("println", Arity::AtLeast(0), |a| {
            let parts: Vec<String> = a.rest(0).iter().map(print).collect();
            Ok(Value::String(parts.join(" ") + "\n"))
        });
        f.insert("printf", Arity::AtLeast(1), |a| {
            Ok(Value::String(sprintf(a.str(0)?, &a.rest(1))))
        });
        f.insert("html", Arity::AtLeast(0), |a| {
            Ok(Value::String(html(&eval_args(a))))
        });
        f.insert("js", Arity::AtLeast(0), |a| {
            Ok(Value::String(js(&eval_args(a))))
        });
        f.insert("urlquery", Arity::AtLeast(0), |a| {
            Ok(Value::String(urlquery(&eval_args(a))))
        });
        f.insert("call", Arity::AtLeast(1), |a| {
            let v = a.any(0);
            Err(FuncError::call(format!(
                "non-function {} of type {}",
                print(&v),
                type_name(&v)
            )))
        });
        f.insert("eq", Arity::AtLeast(1), |a| {
            let x = a.any(0);
            if a.len() < 2 {
                return Err(FuncError::call("missing argument for comparison"));
            }
            for y in a.rest(1) {
                if eq(&x, &y)? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        });
        f.insert("ne", Arity::Exact(2), |a| {
            Ok(Value::Bool(!eq(&a.any(0), &a.any(1))?))
        });
        f.insert("lt", Arity::Exact(2), |a| {
            Ok(Value::Bool(lt(&a.any(0), &a.any(1))?))
        });
        f.insert("le", Arity::Exact(2), |a| {
            let (x, y) = (a.any(0), a.any(1));
            Ok(Value::Bool(lt(&x, &y)? || eq(&x, &y)?))
        });
        f.insert("gt", Arity::Exact(2), |a| {
            let (x, y) = (a.any(0), a.any(1));
            Ok(Value::Bool(!(lt(&x, &y)? || eq(&x, &y)?)))
        });
        f.insert("ge", Arity::Exact(2), |a| {
            Ok(Value::Bool(!lt(&a.any(0), &a.any(1))?))
        });
        f
    }
}

/// `fmt.Sprint`: a space between two operands when neither is a string.
pub(crate) fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in args.iter().enumerate() {
        if i > 0 && !v.is_string() && !args[i - 1].is_string() {
            out.push(' ');
        }
        out.push_str(&print(v));
    }
    out
}

/// The text `html`, `js` and `urlquery` escape: the one string argument, or `fmt.Sprint`.
fn eval_args(a: &Args<'_>) -> String {
    match a.rest(0).as_slice() {
        [Value::String(s)] => s.clone(),
        args => sprint(args),
    }
}

fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn js(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if !is_printable(c) => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Go's `unicode.IsPrint`, near enough: not a control, line or paragraph separator, or an
/// invisible format character.
fn is_printable(c: char) -> bool {
    !(c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{ad}' | '\u{feff}')
        || ('\u{200b}'..='\u{200f}').contains(&c)
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2060}'..='\u{2064}').contains(&c))
}

fn urlquery(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The zero value a Go map's missing key gives: maps of strings (labels, options) give "",
/// the others nil.
pub(crate) fn zero_of(m: &serde_json::Map<String, Value>) -> Value {
    if m.values().all(Value::is_string) {
        Value::String(String::new())
    } else {
        Value::Null
    }
}

fn index(a: &Args<'_>) -> Result<Value, FuncError> {
    let mut item = a.any(0);
    if item.is_null() {
        return Err(FuncError::call("index of untyped nil"));
    }
    for key in a.rest(1) {
        if let Some(b) = as_bytes(&item) {
            item = byte_numbers(&b);
        }
        item = match (&item, &key) {
            (Value::Array(v), k) => {
                let i = k.as_i64().ok_or_else(|| {
                    FuncError::call(format!(
                        "cannot index slice/array with type {}",
                        type_name(k)
                    ))
                })?;
                usize::try_from(i)
                    .ok()
                    .and_then(|i| v.get(i).cloned())
                    .ok_or_else(|| FuncError::call(format!("index out of range: {i}")))?
            }
            (Value::String(s), k) => {
                let i = k.as_i64().ok_or_else(|| {
                    FuncError::call(format!("cannot index string with type {}", type_name(k)))
                })?;
                usize::try_from(i)
                    .ok()
                    .and_then(|i| s.as_bytes().get(i).copied())
                    .map(Value::from)
                    .ok_or_else(|| FuncError::call(format!("index out of range: {i}")))?
            }
            (Value::Object(m), Value::String(k)) => m
                .get(k)
                .map(|v| field(v).clone())
                .unwrap_or_else(|| zero_of(m)),
            (Value::Object(_), k) => {
                return Err(FuncError::call(format!(
                    "value has type {}; should be string",
                    type_name(k)
                )));
            }
            (Value::Null, _) => return Err(FuncError::call("index of nil pointer")),
            (v, _) => {
                return Err(FuncError::call(format!(
                    "can't index item of type {}",
                    type_name(v)
                )));
            }
        };
    }
    Ok(item)
}

fn slice(a: &Args<'_>) -> Result<Value, FuncError> {
    let item = a.any(0);
    let bytes = as_bytes(&item);
    let item = bytes.as_deref().map_or(item, byte_numbers);
    let idx: Vec<i64> = (1..a.len())
        .map(|i| {
            a.any(i).as_i64().ok_or_else(|| {
                FuncError::call(format!(
                    "cannot index slice/array with type {}",
                    type_name(&a.any(i))
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    if idx.len() > 3 {
        return Err(FuncError::call(format!(
            "too many slice indexes: {}",
            idx.len()
        )));
    }
    let len = match &item {
        Value::String(s) => {
            if idx.len() == 3 {
                return Err(FuncError::call("cannot 3-index slice a string"));
            }
            s.len()
        }
        Value::Array(v) => v.len(),
        Value::Null => return Err(FuncError::call("slice of untyped nil")),
        v => {
            return Err(FuncError::call(format!(
                "can't slice item of type {}",
                type_name(v)
            )));
        }
    };
    let mut bounds = [0usize, len, len];
    for (i, &x) in idx.iter().enumerate() {
        let x = usize::try_from(x)
            .ok()
            .filter(|&x| x <= len)
            .ok_or_else(|| FuncError::call(format!("index out of range: {x}")))?;
        bounds[i] = x;
    }
    if bounds[0] > bounds[1] {
        return Err(FuncError::call(format!(
            "invalid slice index: {} > {}",
            bounds[0], bounds[1]
        )));
    }
    Ok(match item {
        Value::String(s) => Value::String(
            s.get(bounds[0]..bounds[1])
                .ok_or_else(|| FuncError::call("slice splits a UTF-8 character"))?
                .to_string(),
        ),
        Value::Array(v) => match bytes {
            Some(b) => bytes_value(&b[bounds[0]..bounds[1]]),
            None => Value::Array(v[bounds[0]..bounds[1]].to_vec()),
        },
        _ => Value::Null,
    })
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum Kind {
    Invalid,
    Bool,
    Int,
    Uint,
    Float,
    Str,
    Other,
}

fn kind(v: &Value) -> Kind {
    match v {
        Value::Null => Kind::Invalid,
        Value::Bool(_) => Kind::Bool,
        Value::Number(n) if n.is_i64() => Kind::Int,
        Value::Number(n) if n.is_u64() => Kind::Uint,
        Value::Number(_) => Kind::Float,
        Value::String(_) => Kind::Str,
        _ => Kind::Other,
    }
}

fn eq(x: &Value, y: &Value) -> Result<bool, FuncError> {
    let (kx, ky) = (kind(x), kind(y));
    if kx != ky {
        return match (kx, ky) {
            (Kind::Int, Kind::Uint) | (Kind::Uint, Kind::Int) => Ok(false),
            (Kind::Invalid, _) | (_, Kind::Invalid) => Ok(false),
            _ => Err(FuncError::call("incompatible types for comparison")),
        };
    }
    match kx {
        Kind::Other => Err(FuncError::call(format!(
            "non-comparable type {}: {}",
            print(y),
            type_name(y)
        ))),
        Kind::Float => Ok(x.as_f64() == y.as_f64()),
        _ => Ok(x == y),
    }
}

fn lt(x: &Value, y: &Value) -> Result<bool, FuncError> {
    let (kx, ky) = (kind(x), kind(y));
    if matches!(kx, Kind::Invalid | Kind::Bool | Kind::Other) {
        return Err(FuncError::call("invalid type for comparison"));
    }
    if kx != ky {
        return match (kx, ky) {
            (Kind::Int, Kind::Uint) => Ok(true),
            (Kind::Uint, Kind::Int) => Ok(false),
            _ => Err(FuncError::call("incompatible types for comparison")),
        };
    }
    Ok(match (x, y) {
        (Value::String(a), Value::String(b)) => a < b,
        (Value::Number(a), Value::Number(b)) => {
            match (a.as_i64(), b.as_i64(), a.as_u64(), b.as_u64()) {
                (Some(a), Some(b), _, _) => a < b,
                (_, _, Some(a), Some(b)) => a < b,
                _ => a.as_f64() < b.as_f64(),
            }
        }
        _ => false,
    })
}
