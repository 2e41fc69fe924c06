//! Runs a parse tree over a JSON value, following Go's `text/template` executor: the same
//! evaluation order, variable scoping, and error texts, with the position of the node that
//! failed (`template: NAME:LINE:COL: executing "NAME" at <NODE>: …`).
use serde_json::Value;

use crate::ast::{Arg, Branch, Cmd, List, Node, Pipe};
use crate::funcs::{Args, Arity, FuncError, Funcs, zero_of};
use crate::parse::Tree;
use crate::value::{as_bytes, byte_numbers, field, is_true, print, type_name};
use crate::{Error, MissingKey};

/// Go's `reflect.Value`, reduced: `None` is the invalid value (a missing map key), which
/// prints as `<no value>`.
type Val = Option<Value>;

/// Deeper `{{template}}` recursion than this is refused. Go allows 100000 on its growable
/// goroutine stacks; ours is a thread's fixed stack, and a template must never overflow it.
const MAX_DEPTH: usize = 100;

/// What stops a walk early: an error, or `{{break}}`/`{{continue}}` on the way to its range.
enum Stop {
    Error(Box<Error>),
    Break,
    Continue,
}

type Res<T> = Result<T, Stop>;

pub(crate) struct Exec<'a> {
    pub(crate) tree: &'a Tree,
    pub(crate) funcs: &'a Funcs,
    pub(crate) src: &'a str,
    pub(crate) name: &'a str,
    pub(crate) missing_key: &'a MissingKey,
    pub(crate) out: &'a mut String,
    vars: Vec<(String, Val)>,
    depth: usize,
}

impl<'a> Exec<'a> {
    pub(crate) fn new(
        tree: &'a Tree,
        funcs: &'a Funcs,
        src: &'a str,
        name: &'a str,
        missing_key: &'a MissingKey,
        out: &'a mut String,
    ) -> Self {
        Self {
            tree,
            funcs,
            src,
            name,
            missing_key,
            out,
            vars: Vec::new(),
            depth: 0,
        }
    }

    pub(crate) fn run(&mut self, data: &Value) -> Result<(), Error> {
        self.vars = vec![("$".into(), Some(data.clone()))];
        match self.walk_list(&Some(data.clone()), &self.tree.root) {
            Ok(()) => Ok(()),
            Err(Stop::Error(e)) => Err(*e),
            Err(Stop::Break | Stop::Continue) => Ok(()),
        }
    }

    fn fail<T>(&self, pos: usize, node: &dyn std::fmt::Display, message: String) -> Res<T> {
        let before = &self.src[..pos.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(pos, |i| pos - i - 1);
        let context = node.to_string();
        Err(Stop::Error(Box::new(Error::Exec {
            name: self.name.to_string(),
            line,
            column,
            context,
            message,
        })))
    }

    fn walk_list(&mut self, dot: &Val, list: &List) -> Res<()> {
        list.iter().try_for_each(|n| self.walk(dot, n))
    }

    fn walk(&mut self, dot: &Val, node: &Node) -> Res<()> {
        match node {
            Node::Text(t) => {
                self.out.push_str(t);
                Ok(())
            }
            Node::Action(pipe) => {
                let v = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    match v {
                        None => self.out.push_str("<no value>"),
                        Some(v) => self.out.push_str(&print(&v)),
                    }
                }
                Ok(())
            }
            Node::If(b) | Node::With(b) => {
                let mark = self.vars.len();
                let v = self.eval_pipeline(dot, &b.pipe)?;
                let r = if v.as_ref().is_some_and(is_true) {
                    let inner = if matches!(node, Node::With(_)) {
                        &v
                    } else {
                        dot
                    };
                    self.walk_list(inner, &b.list)
                } else if let Some(e) = &b.else_list {
                    self.walk_list(dot, e)
                } else {
                    Ok(())
                };
                self.vars.truncate(mark);
                r
            }
            Node::Range(b) => {
                let mark = self.vars.len();
                let r = self.walk_range(dot, b);
                self.vars.truncate(mark);
                r
            }
            Node::Break => Err(Stop::Break),
            Node::Continue => Err(Stop::Continue),
            Node::Template { pos, name, pipe } => {
                let shown = match pipe {
                    Some(p) => format!("{{{{template {name:?} {p}}}}}"),
                    None => format!("{{{{template {name:?}}}}}"),
                };
                let Some(list) = self.tree.defines.get(name) else {
                    return self.fail(*pos, &shown, format!("template {name:?} not defined"));
                };
                if self.depth >= MAX_DEPTH {
                    return self.fail(
                        *pos,
                        &shown,
                        format!("exceeded maximum template depth ({MAX_DEPTH})"),
                    );
                }
                let new_dot = match pipe {
                    Some(p) => self.eval_pipeline(dot, p)?,
                    None => None,
                };
                let saved = std::mem::replace(&mut self.vars, vec![("$".into(), new_dot.clone())]);
                self.depth += 1;
                let r = self.walk_list(&new_dot, list);
                self.depth -= 1;
                self.vars = saved;
                match r {
                    Err(Stop::Break | Stop::Continue) => Ok(()),
                    r => r,
                }
            }
        }
    }

    fn walk_range(&mut self, dot: &Val, b: &Branch) -> Res<()> {
        let v = self.eval_pipeline(dot, &b.pipe)?;
        let mark = self.vars.len();
        // Go blames the node it evaluated last: a function's last argument, else the operand.
        let last = b.pipe.cmds.last().and_then(|c| match c.args.first() {
            Some(Arg::Ident { .. }) => c.args.last(),
            first => first,
        });
        let (at_pos, at): (usize, &dyn std::fmt::Display) = match last {
            Some(a) => (a.pos(), a),
            None => (b.pipe.pos, &b.pipe),
        };
        let v = v.map(|v| as_bytes(&v).map_or(v, |b| byte_numbers(&b)));
        let items: Box<dyn Iterator<Item = (Value, Value)>> = match v {
            None | Some(Value::Null) => Box::new(std::iter::empty()),
            Some(Value::Array(a)) => {
                Box::new(a.into_iter().enumerate().map(|(i, e)| (Value::from(i), e)))
            }
            Some(Value::Object(m)) => {
                let mut kv: Vec<(String, Value)> = m.into_iter().collect();
                kv.sort_by(|x, y| x.0.cmp(&y.0));
                Box::new(
                    kv.into_iter()
                        .map(|(k, v)| (Value::String(k), field(&v).clone())),
                )
            }
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
                if b.pipe.decl.len() > 1 {
                    return self.fail(
                        at_pos,
                        at,
                        format!("can't use {n} to iterate over more than one variable"),
                    );
                }
                // Lazily: `range 1000000000` must not allocate its numbers up front.
                Box::new(
                    (0..n.as_i64().unwrap_or(0).max(0)).map(|i| (Value::from(i), Value::from(i))),
                )
            }
            Some(other) => {
                return self.fail(
                    at_pos,
                    at,
                    format!("range can't iterate over {}", print(&other)),
                );
            }
        };
        let mut items = items.peekable();
        if items.peek().is_none() {
            if let Some(e) = &b.else_list {
                return self.walk_list(dot, e);
            }
            return Ok(());
        }
        for (index, elem) in items {
            match b.pipe.decl.as_slice() {
                [] => {}
                [one] => self.set_range_var(one, b.pipe.is_assign, 1, elem.clone()),
                [first, second, ..] => {
                    self.set_range_var(first, b.pipe.is_assign, 2, index);
                    self.set_range_var(second, b.pipe.is_assign, 1, elem.clone());
                }
            }
            let r = self.walk_list(&Some(elem), &b.list);
            self.vars.truncate(mark);
            match r {
                Ok(()) | Err(Stop::Continue) => {}
                Err(Stop::Break) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// A range variable: declared ones sit on top of the stack (`n`th from the top);
    /// assigned ones (`=`) are looked up by name.
    fn set_range_var(&mut self, name: &str, assign: bool, n: usize, v: Value) {
        if assign {
            self.set_var(name, Some(v));
        } else if let Some(slot) = self
            .vars
            .len()
            .checked_sub(n)
            .and_then(|i| self.vars.get_mut(i))
        {
            slot.1 = Some(v);
        }
    }

    fn set_var(&mut self, name: &str, v: Val) {
        if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            slot.1 = v;
        }
    }

    fn var_value(&self, pos: usize, name: &str) -> Res<Val> {
        match self.vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => self.fail(pos, &name, format!("undefined variable: {name}")),
        }
    }

    fn eval_pipeline(&mut self, dot: &Val, pipe: &Pipe) -> Res<Val> {
        let mut value: Option<Val> = None;
        for cmd in &pipe.cmds {
            value = Some(self.eval_command(dot, cmd, value)?);
        }
        let value = value.flatten();
        for name in &pipe.decl {
            if pipe.is_assign {
                self.set_var(name, value.clone());
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    /// One command; `fin` is the previous command's result, passed as the last argument.
    fn eval_command(&mut self, dot: &Val, cmd: &Cmd, fin: Option<Val>) -> Res<Val> {
        let first = &cmd.args[0];
        match first {
            Arg::Field { names, .. } => {
                self.eval_field_chain(dot, dot.clone(), first, names, &cmd.args, fin)
            }
            Arg::Chain { node, names, .. } => {
                let recv = self.eval_arg(dot, node)?;
                self.eval_field_chain(dot, recv, first, names, &cmd.args, fin)
            }
            Arg::Variable { pos, name, names } => {
                let v = self.var_value(*pos, name)?;
                if names.is_empty() {
                    self.not_a_function(&cmd.args, &fin)?;
                    return Ok(v);
                }
                self.eval_field_chain(dot, v, first, names, &cmd.args, fin)
            }
            Arg::Ident { pos, name } => self.eval_function(dot, *pos, name, &cmd.args, fin, cmd),
            Arg::Pipe(p) => {
                self.not_a_function(&cmd.args, &fin)?;
                self.eval_pipeline(dot, p)
            }
            Arg::Dot(_) => {
                self.not_a_function(&cmd.args, &fin)?;
                Ok(dot.clone())
            }
            Arg::Const { value, .. } => {
                self.not_a_function(&cmd.args, &fin)?;
                Ok(Some(value.clone()))
            }
            Arg::Nil(pos) => self.fail(*pos, first, "nil is not a command".into()),
        }
    }

    fn not_a_function(&self, args: &[Arg], fin: &Option<Val>) -> Res<()> {
        if args.len() > 1 || fin.is_some() {
            return self.fail(
                args[0].pos(),
                &args[0],
                format!("can't give argument to non-function {}", args[0]),
            );
        }
        Ok(())
    }

    /// An argument's value (Go's `evalEmptyInterface`).
    fn eval_arg(&mut self, dot: &Val, arg: &Arg) -> Res<Val> {
        match arg {
            Arg::Dot(_) => Ok(dot.clone()),
            Arg::Nil(_) => Ok(Some(Value::Null)),
            Arg::Const { value, .. } => Ok(Some(value.clone())),
            Arg::Field { names, .. } => self.eval_field_chain(
                dot,
                dot.clone(),
                arg,
                names,
                std::slice::from_ref(arg),
                None,
            ),
            Arg::Variable { pos, name, names } => {
                let v = self.var_value(*pos, name)?;
                if names.is_empty() {
                    return Ok(v);
                }
                self.eval_field_chain(dot, v, arg, names, std::slice::from_ref(arg), None)
            }
            Arg::Chain { node, names, .. } => {
                let recv = self.eval_arg(dot, node)?;
                self.eval_field_chain(dot, recv, arg, names, std::slice::from_ref(arg), None)
            }
            Arg::Pipe(p) => self.eval_pipeline(dot, p),
            Arg::Ident { pos, name } => {
                self.eval_function(dot, *pos, name, std::slice::from_ref(arg), None, arg)
            }
        }
    }

    fn eval_field_chain(
        &mut self,
        dot: &Val,
        mut recv: Val,
        node: &Arg,
        names: &[String],
        args: &[Arg],
        fin: Option<Val>,
    ) -> Res<Val> {
        let Some((last, init)) = names.split_last() else {
            return Ok(recv);
        };
        for name in init {
            recv = self.eval_field(dot, name, node, &args[..1], None, recv)?;
        }
        self.eval_field(dot, last, node, args, fin, recv)
    }

    fn eval_field(
        &mut self,
        dot: &Val,
        name: &str,
        node: &Arg,
        args: &[Arg],
        fin: Option<Val>,
        recv: Val,
    ) -> Res<Val> {
        let pos = node.pos();
        let Some(recv) = recv else {
            if *self.missing_key == MissingKey::Error {
                return self.fail(pos, node, format!("nil data; no entry for key {name:?}"));
            }
            return Ok(None);
        };
        if as_bytes(&recv).is_some() {
            return self.fail(
                pos,
                node,
                format!("can't evaluate field {name} in type []uint8"),
            );
        }
        if recv.is_object()
            && let Some(m) = self.funcs.method(name).cloned()
        {
            let mut vals = Vec::new();
            for a in &args[1..] {
                vals.push(self.eval_arg(dot, a)?);
            }
            if let Some(f) = fin {
                vals.push(f);
            }
            self.check_arity(pos, node, name, m.arity, vals.len())?;
            return match (m.body)(&recv, &Args::new(&vals)) {
                Ok(v) => Ok(Some(v)),
                Err(e) => self.call_error((pos, node), (pos, node), name, args, &vals, e),
            };
        }
        let has_args = args.len() > 1 || fin.is_some();
        match recv {
            Value::Object(m) => {
                if has_args {
                    return self.fail(
                        pos,
                        node,
                        format!("{name} is not a method but has arguments"),
                    );
                }
                match m.get(name) {
                    Some(v) => Ok(Some(field(v).clone())),
                    None => match self.missing_key {
                        MissingKey::Default => Ok(None),
                        MissingKey::Zero => Ok(Some(zero_of(&m))),
                        MissingKey::Error => {
                            self.fail(pos, node, format!("map has no entry for key {name:?}"))
                        }
                        MissingKey::Field(t) => self.fail(
                            pos,
                            node,
                            format!("can't evaluate field {name} in type {t}"),
                        ),
                    },
                }
            }
            Value::Null => self.fail(
                pos,
                node,
                format!("nil pointer evaluating interface {{}}.{name}"),
            ),
            other => self.fail(
                pos,
                node,
                format!("can't evaluate field {name} in type {}", type_name(&other)),
            ),
        }
    }

    fn check_arity(
        &self,
        pos: usize,
        node: &dyn std::fmt::Display,
        name: &str,
        arity: Arity,
        got: usize,
    ) -> Res<()> {
        match arity {
            Arity::Exact(n) if n != got => self.fail(
                pos,
                node,
                format!("wrong number of args for {name}: want {n} got {got}"),
            ),
            Arity::AtLeast(n) if got < n => self.fail(
                pos,
                node,
                format!("wrong number of args for {name}: want at least {n} got {got}"),
            ),
            _ => Ok(()),
        }
    }

    /// A function's failure, placed as Go places it: a type error at the argument (or at
    /// the function, for the piped-in value), a call error at the whole command.
    fn call_error<T>(
        &self,
        ident: (usize, &dyn std::fmt::Display),
        cmd: (usize, &dyn std::fmt::Display),
        name: &str,
        args: &[Arg],
        vals: &[Val],
        e: FuncError,
    ) -> Res<T> {
        match e {
            FuncError::Arg { index, message } => match args.get(index + 1) {
                Some(a) => self.fail(a.pos(), a, message),
                None => self.fail(ident.0, ident.1, message),
            },
            FuncError::Type { index, expected } => {
                let value = vals.get(index).cloned().flatten();
                let node = args.get(index + 1);
                let message = match (node, &value) {
                    (Some(Arg::Const { text, .. }), _) => match expected.as_str() {
                        "string" => format!("expected string; found {text}"),
                        "int" => format!("expected integer; found {text}"),
                        _ => format!("can't handle {text} for arg of type {expected}"),
                    },
                    (Some(Arg::Nil(_)), _) => format!("cannot assign nil to {expected}"),
                    (_, None) => format!("invalid value; expected {expected}"),
                    (_, Some(v)) => format!(
                        "wrong type for value; expected {expected}; got {}",
                        type_name(v)
                    ),
                };
                match node {
                    Some(a) => self.fail(a.pos(), a, message),
                    None => self.fail(ident.0, ident.1, message),
                }
            }
            FuncError::Call(message) => {
                self.fail(cmd.0, cmd.1, format!("error calling {name}: {message}"))
            }
        }
    }

    fn eval_function(
        &mut self,
        dot: &Val,
        pos: usize,
        name: &str,
        args: &[Arg],
        fin: Option<Val>,
        cmd: &dyn std::fmt::Display,
    ) -> Res<Val> {
        let Some(f) = self.funcs.get(name).cloned() else {
            return self.fail(pos, &name, format!("{name:?} is not a defined function"));
        };
        let given = args.len() - 1 + usize::from(fin.is_some());
        self.check_arity(pos, &name, name, f.arity, given)?;
        if name == "and" || name == "or" {
            let want = name == "or";
            let mut v = None;
            for a in &args[1..] {
                v = self.eval_arg(dot, a)?;
                if v.as_ref().is_some_and(is_true) == want {
                    return Ok(v);
                }
            }
            if let Some(f) = fin {
                v = f;
            }
            return Ok(v);
        }
        let mut vals = Vec::with_capacity(given);
        for a in &args[1..] {
            vals.push(self.eval_arg(dot, a)?);
        }
        if let Some(f) = fin {
            vals.push(f);
        }
        match (f.body)(&Args::new(&vals)) {
            Ok(v) => Ok(Some(v)),
            Err(e) => self.call_error((pos, &name), (args[0].pos(), cmd), name, args, &vals, e),
        }
    }
}
