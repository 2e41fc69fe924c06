//! Builds the parse tree from tokens, with the checks Go's parser makes before anything runs:
//! undefined functions and variables, `break`/`continue` outside `range`, unbalanced `end`.
use std::collections::HashMap;

use serde_json::Value;

use crate::ast::{Arg, Branch, Cmd, List, Node, Pipe};
use crate::lexer::{Keyword, Tok, Token};
use crate::literal::number;

/// A parse error: the message and the byte offset it is about.
#[derive(Debug)]
pub(crate) struct ParseError {
    pub(crate) msg: String,
    pub(crate) pos: usize,
}

type PResult<T> = Result<T, ParseError>;

/// How deep `if`/`range`/`with` and parentheses may nest (Go sets no limit).
const MAX_NESTING: usize = 100;

/// The parsed template: its body and the `{{define}}`d templates.
pub(crate) struct Tree {
    pub(crate) root: List,
    pub(crate) defines: HashMap<String, List>,
}

pub(crate) fn parse(tokens: Vec<Token>, is_func: &dyn Fn(&str) -> bool) -> PResult<Tree> {
    let mut p = Parser {
        toks: tokens,
        i: 0,
        vars: vec!["$".into()],
        range_depth: 0,
        nesting: 0,
        is_func,
        defines: HashMap::new(),
    };
    let mut root = Vec::new();
    loop {
        match p.peek().tok {
            Tok::Eof => break,
            Tok::LeftDelim => {
                let at = p.i;
                let delim = p.next();
                if p.peek_non_space().tok == Tok::Keyword(Keyword::Define) {
                    p.next_non_space();
                    p.define(delim.pos)?;
                } else {
                    p.i = at;
                    match p.text_or_action()? {
                        Item::Node(n) => root.push(n),
                        Item::End(pos) | Item::Else(pos, _) => {
                            return Err(err(pos, "unexpected {{end}}".to_string()));
                        }
                    }
                }
            }
            _ => match p.text_or_action()? {
                Item::Node(n) => root.push(n),
                Item::End(pos) | Item::Else(pos, _) => {
                    return Err(err(pos, "unexpected {{end}}".to_string()));
                }
            },
        }
    }
    Ok(Tree {
        root,
        defines: p.defines,
    })
}

fn err(pos: usize, msg: String) -> ParseError {
    ParseError { msg, pos }
}

/// What `text_or_action` found: a node, or the `{{end}}`/`{{else}}` that closes a list.
enum Item {
    Node(Node),
    End(usize),
    /// `{{else}}`, or `{{else if …}}`/`{{else with …}}` (the keyword is still to be read).
    Else(usize, Option<Keyword>),
}

struct Parser<'a> {
    toks: Vec<Token>,
    i: usize,
    vars: Vec<String>,
    range_depth: usize,
    /// Open control structures and parentheses, bounded so that parsing and running a
    /// template can never overflow the stack.
    nesting: usize,
    is_func: &'a dyn Fn(&str) -> bool,
    defines: HashMap<String, List>,
}

/// How Go names a token in "unexpected …" messages.
fn describe(t: &Token) -> String {
    match &t.tok {
        Tok::Text(s) => format!("{s:?}"),
        Tok::LeftDelim => "\"{{\"".into(),
        Tok::RightDelim => "\"}}\"".into(),
        Tok::Field(n) => format!("<.{n}>"),
        Tok::Dot => "<.>".into(),
        Tok::Variable(n) | Tok::Ident(n) => format!("<{n}>"),
        Tok::Keyword(k) => format!("<{}>", keyword_name(*k)),
        Tok::Bool(b) => format!("{b:?}"),
        Tok::Nil => "<nil>".into(),
        Tok::Str { text, .. } => format!("{text:?}"),
        Tok::Number(s) | Tok::Char(_, s) => format!("{s:?}"),
        Tok::Pipe => "\"|\"".into(),
        Tok::LeftParen => "\"(\"".into(),
        Tok::RightParen => "\")\"".into(),
        Tok::Declare => "\":=\"".into(),
        Tok::Assign => "\"=\"".into(),
        Tok::Comma => "\",\"".into(),
        Tok::Space => "\" \"".into(),
        Tok::Eof => "EOF".into(),
    }
}

fn keyword_name(k: Keyword) -> &'static str {
    match k {
        Keyword::If => "if",
        Keyword::Else => "else",
        Keyword::End => "end",
        Keyword::Range => "range",
        Keyword::With => "with",
        Keyword::Define => "define",
        Keyword::Template => "template",
        Keyword::Block => "block",
        Keyword::Break => "break",
        Keyword::Continue => "continue",
    }
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        self.i = (self.i + 1).min(self.toks.len());
        t
    }

    fn next_non_space(&mut self) -> Token {
        loop {
            let t = self.next();
            if t.tok != Tok::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> Token {
        let t = self.next_non_space();
        self.i -= 1;
        t
    }

    fn unexpected<T>(&self, t: &Token, context: &str) -> PResult<T> {
        if t.tok == Tok::Eof {
            return Err(err(t.pos, "unexpected EOF".into()));
        }
        Err(err(
            t.pos,
            format!("unexpected {} in {context}", describe(t)),
        ))
    }

    fn expect(&mut self, want: &Tok, context: &str) -> PResult<Token> {
        let t = self.next_non_space();
        if &t.tok != want {
            return self.unexpected(&t, context);
        }
        Ok(t)
    }

    fn text_or_action(&mut self) -> PResult<Item> {
        let t = self.next_non_space();
        match t.tok {
            Tok::Text(s) => Ok(Item::Node(Node::Text(s))),
            Tok::LeftDelim => self.action(),
            _ => self.unexpected(&t, "input"),
        }
    }

    /// A list up to its `{{end}}` or `{{else}}`.
    fn item_list(&mut self) -> PResult<(List, Item)> {
        let mut list = Vec::new();
        loop {
            if self.peek_non_space().tok == Tok::Eof {
                let t = self.next_non_space();
                return self.unexpected(&t, "input");
            }
            match self.text_or_action()? {
                Item::Node(n) => list.push(n),
                end => return Ok((list, end)),
            }
        }
    }

    fn action(&mut self) -> PResult<Item> {
        let t = self.next_non_space();
        match t.tok {
            Tok::Keyword(Keyword::Block) => return self.block(t.pos).map(Item::Node),
            Tok::Keyword(Keyword::Break) | Tok::Keyword(Keyword::Continue) => {
                let is_break = t.tok == Tok::Keyword(Keyword::Break);
                let word = if is_break { "break" } else { "continue" };
                if self.range_depth == 0 {
                    return Err(err(t.pos, format!("{{{{{word}}}}} outside {{{{range}}}}")));
                }
                let close = self.next_non_space();
                if close.tok != Tok::RightDelim {
                    return self.unexpected(&close, &format!("{{{{{word}}}}}"));
                }
                return Ok(Item::Node(if is_break {
                    Node::Break
                } else {
                    Node::Continue
                }));
            }
            Tok::Keyword(Keyword::Else) => {
                let next = self.peek_non_space();
                return match next.tok {
                    Tok::Keyword(k @ (Keyword::If | Keyword::With)) => {
                        Ok(Item::Else(t.pos, Some(k)))
                    }
                    _ => {
                        self.expect(&Tok::RightDelim, "else")?;
                        Ok(Item::Else(t.pos, None))
                    }
                };
            }
            Tok::Keyword(Keyword::End) => {
                self.expect(&Tok::RightDelim, "end")?;
                return Ok(Item::End(t.pos));
            }
            Tok::Keyword(Keyword::If) => return self.control(Keyword::If).map(Item::Node),
            Tok::Keyword(Keyword::Range) => return self.control(Keyword::Range).map(Item::Node),
            Tok::Keyword(Keyword::With) => return self.control(Keyword::With).map(Item::Node),
            Tok::Keyword(Keyword::Template) => return self.template(t.pos).map(Item::Node),
            Tok::Keyword(Keyword::Define) => {
                return Err(err(t.pos, "unexpected <define> in command".into()));
            }
            _ => {}
        }
        self.i -= 1;
        let pipe = self.pipeline("command", &Tok::RightDelim)?;
        Ok(Item::Node(Node::Action(pipe)))
    }

    /// `if`, `with` and `range`; an `{{else if …}}` becomes an `if` inside the else list
    /// that shares this control's `{{end}}`, as Go does.
    fn control(&mut self, kind: Keyword) -> PResult<Node> {
        let pos = self.peek().pos;
        self.enter(pos)?;
        let node = self.control_body(kind);
        self.nesting -= 1;
        node
    }

    fn enter(&mut self, pos: usize) -> PResult<()> {
        if self.nesting >= MAX_NESTING {
            return Err(err(pos, format!("nesting deeper than {MAX_NESTING}")));
        }
        self.nesting += 1;
        Ok(())
    }

    fn control_body(&mut self, kind: Keyword) -> PResult<Node> {
        let mark = self.vars.len();
        let context = keyword_name(kind);
        let pipe = self.pipeline(context, &Tok::RightDelim)?;
        if kind == Keyword::Range {
            self.range_depth += 1;
        }
        let (list, end) = self.item_list()?;
        if kind == Keyword::Range {
            self.range_depth -= 1;
        }
        let else_list = match end {
            Item::End(_) => None,
            Item::Else(_, Some(k)) if k == kind || (kind == Keyword::If && k == Keyword::If) => {
                self.next_non_space();
                let nested = self.control(k)?;
                Some(vec![nested])
            }
            Item::Else(pos, Some(k)) => {
                return Err(err(
                    pos,
                    format!("unexpected <{}> after else in {context}", keyword_name(k)),
                ));
            }
            Item::Else(_, None) => {
                let (else_list, end) = self.item_list()?;
                if let Item::Else(pos, _) = end {
                    return Err(err(pos, "expected end; found {{else}}".into()));
                }
                Some(else_list)
            }
            Item::Node(_) => None,
        };
        self.vars.truncate(mark);
        let branch = Branch {
            pipe,
            list,
            else_list,
        };
        Ok(match kind {
            Keyword::If => Node::If(branch),
            Keyword::With => Node::With(branch),
            _ => Node::Range(branch),
        })
    }

    fn template(&mut self, _: usize) -> PResult<Node> {
        let t = self.next_non_space();
        let pos = t.pos;
        let Tok::Str { value: name, .. } = t.tok else {
            return self.unexpected(&t, "template clause");
        };
        let pipe = if self.peek_non_space().tok == Tok::RightDelim {
            self.next_non_space();
            None
        } else {
            Some(self.pipeline("template clause", &Tok::RightDelim)?)
        };
        Ok(Node::Template { pos, name, pipe })
    }

    fn define(&mut self, pos: usize) -> PResult<()> {
        let t = self.next_non_space();
        let Tok::Str { value: name, .. } = t.tok else {
            return self.unexpected(&t, "define clause");
        };
        self.expect(&Tok::RightDelim, "define clause")?;
        let saved = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let (list, end) = self.item_list()?;
        self.vars = saved;
        if !matches!(end, Item::End(_)) {
            return Err(err(pos, "unexpected {{else}} in define clause".into()));
        }
        self.defines.insert(name, list);
        Ok(())
    }

    fn block(&mut self, pos: usize) -> PResult<Node> {
        let t = self.next_non_space();
        let Tok::Str { value: name, .. } = t.tok else {
            return self.unexpected(&t, "block clause");
        };
        let pipe = self.pipeline("block clause", &Tok::RightDelim)?;
        let saved = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let (list, end) = self.item_list()?;
        self.vars = saved;
        if !matches!(end, Item::End(_)) {
            return Err(err(pos, "unexpected {{else}} in block clause".into()));
        }
        self.defines.insert(name.clone(), list);
        Ok(Node::Template {
            pos,
            name,
            pipe: Some(pipe),
        })
    }

    fn pipeline(&mut self, context: &str, end: &Tok) -> PResult<Pipe> {
        let start = self.peek_non_space();
        let mut pipe = Pipe {
            pos: start.pos,
            decl: Vec::new(),
            is_assign: false,
            cmds: Vec::new(),
        };
        // Declarations: `$x :=`, `$x =`, or `$i, $v :=` in a range.
        'decls: loop {
            let save = self.i;
            let v = self.next_non_space();
            let Tok::Variable(name) = v.tok else {
                self.i = save;
                break;
            };
            let op = self.next_non_space();
            match op.tok {
                Tok::Declare | Tok::Assign => {
                    pipe.is_assign = op.tok == Tok::Assign;
                    if pipe.is_assign && !self.vars.contains(&name) {
                        return Err(err(v.pos, format!("undefined variable {name:?}")));
                    }
                    if !pipe.is_assign {
                        self.vars.push(name.clone());
                    }
                    pipe.decl.push(name);
                    break 'decls;
                }
                Tok::Comma if context == "range" && pipe.decl.is_empty() => {
                    if !self.vars.contains(&name) {
                        self.vars.push(name.clone());
                    }
                    pipe.decl.push(name);
                }
                Tok::Comma => {
                    return Err(err(op.pos, format!("too many declarations in {context}")));
                }
                _ => {
                    self.i = save;
                    if !pipe.decl.is_empty() {
                        return Err(err(v.pos, format!("missing := in {context}")));
                    }
                    break;
                }
            }
        }
        loop {
            let t = self.next_non_space();
            if &t.tok == end {
                if pipe.cmds.is_empty() {
                    return Err(err(t.pos, format!("missing value for {context}")));
                }
                for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
                    if matches!(
                        c.args.first(),
                        Some(Arg::Const { .. } | Arg::Nil(_) | Arg::Dot(_))
                    ) {
                        return Err(err(
                            c.pos,
                            format!("non executable command in pipeline stage {}", i + 1),
                        ));
                    }
                }
                return Ok(pipe);
            }
            match t.tok {
                Tok::Bool(_)
                | Tok::Char(..)
                | Tok::Dot
                | Tok::Field(_)
                | Tok::Ident(_)
                | Tok::Number(_)
                | Tok::Nil
                | Tok::Str { .. }
                | Tok::Variable(_)
                | Tok::LeftParen => {
                    self.i -= 1;
                    pipe.cmds.push(self.command()?);
                }
                _ => return self.unexpected(&t, context),
            }
        }
    }

    fn command(&mut self) -> PResult<Cmd> {
        let pos = self.peek_non_space().pos;
        let mut args = Vec::new();
        loop {
            self.peek_non_space();
            if let Some(a) = self.operand()? {
                args.push(a);
            }
            let t = self.next();
            match t.tok {
                Tok::Space => continue,
                Tok::RightDelim | Tok::RightParen => self.i -= 1,
                Tok::Pipe => {}
                _ => return self.unexpected(&t, "operand"),
            }
            break;
        }
        if args.is_empty() {
            return Err(err(pos, "empty command".into()));
        }
        Ok(Cmd { pos, args })
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        let mut names = Vec::new();
        // Go gives a chain the position of its first field after the term.
        let pos = self.peek().pos;
        while let Tok::Field(n) = &self.peek().tok {
            names.push(n.clone());
            self.next();
        }
        if names.is_empty() {
            return Ok(Some(node));
        }
        Ok(Some(match node {
            Arg::Field {
                names: mut first, ..
            } => {
                first.extend(names);
                Arg::Field { pos, names: first }
            }
            Arg::Variable {
                name,
                names: mut first,
                ..
            } => {
                first.extend(names);
                Arg::Variable {
                    pos,
                    name,
                    names: first,
                }
            }
            Arg::Const { pos, ref text, .. } => {
                return Err(err(pos, format!("unexpected . after term {text:?}")));
            }
            Arg::Nil(pos) | Arg::Dot(pos) => {
                return Err(err(
                    pos,
                    format!("unexpected . after term {:?}", node.to_string()),
                ));
            }
            other => Arg::Chain {
                pos,
                node: Box::new(other),
                names,
            },
        }))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let t = self.next_non_space();
        let pos = t.pos;
        Ok(Some(match t.tok {
            Tok::Ident(name) => {
                if !(self.is_func)(&name) {
                    return Err(err(pos, format!("function {name:?} not defined")));
                }
                Arg::Ident { pos, name }
            }
            Tok::Dot => Arg::Dot(pos),
            Tok::Nil => Arg::Nil(pos),
            Tok::Variable(name) => {
                if !self.vars.contains(&name) {
                    return Err(err(pos, format!("undefined variable {name:?}")));
                }
                Arg::Variable {
                    pos,
                    name,
                    names: Vec::new(),
                }
            }
            Tok::Field(n) => Arg::Field {
                pos,
                names: vec![n],
            },
            Tok::Bool(b) => Arg::Const {
                pos,
                value: Value::Bool(b),
                text: b.to_string(),
            },
            Tok::Char(c, text) => Arg::Const {
                pos,
                value: Value::from(u32::from(c)),
                text,
            },
            Tok::Number(text) => Arg::Const {
                pos,
                value: number(&text).map_err(|m| err(pos, m))?,
                text,
            },
            Tok::Str { value, text } => Arg::Const {
                pos,
                value: Value::String(value),
                text,
            },
            Tok::LeftParen => {
                self.enter(pos)?;
                let pipe = self.pipeline("parenthesized pipeline", &Tok::RightParen);
                self.nesting -= 1;
                Arg::Pipe(Box::new(pipe?))
            }
            _ => {
                self.i -= 1;
                return Ok(None);
            }
        }))
    }
}
