//! Go's text/template semantics that the Swarm recording does not reach, and the API a
//! caller uses to add functions. The expected outputs of `GO_DOC_CASES` were checked with
//! `docker version --format T` (CLI 28.2.2, Engine 26.1.5), which runs Go's text/template
//! under the name "version"; the first eleven are the examples of Go's text/template docs.
use lockbox_gotemplate::{Arity, Error, FuncError, Funcs, MissingKey, Template};
use serde_json::{Value, json};

const GO_DOC_CASES: &[(&str, Result<&str, &str>)] = &[
    (r#"{{"\"output\""}}"#, Ok(r#""output""#)),
    (r#"{{`"output"`}}"#, Ok(r#""output""#)),
    (r#"{{printf "%q" "output"}}"#, Ok(r#""output""#)),
    (r#"{{"output" | printf "%q"}}"#, Ok(r#""output""#)),
    (r#"{{printf "%q" (print "out" "put")}}"#, Ok(r#""output""#)),
    (
        r#"{{"put" | printf "%s%s" "out" | printf "%q"}}"#,
        Ok(r#""output""#),
    ),
    (
        r#"{{"output" | printf "%s" | printf "%q"}}"#,
        Ok(r#""output""#),
    ),
    (
        r#"{{with "output"}}{{printf "%q" .}}{{end}}"#,
        Ok(r#""output""#),
    ),
    (
        r#"{{with $x := "output" | printf "%q"}}{{$x}}{{end}}"#,
        Ok(r#""output""#),
    ),
    (
        r#"{{with $x := "output"}}{{printf "%q" $x}}{{end}}"#,
        Ok(r#""output""#),
    ),
    (
        r#"{{with $x := "output"}}{{$x | printf "%q"}}{{end}}"#,
        Ok(r#""output""#),
    ),
    (r#"{{with ""}}x{{else with "y"}}{{.}}{{end}}"#, Ok("y")),
    (
        r#"{{if false}}a{{else if false}}b{{else if true}}c{{end}}"#,
        Ok("c"),
    ),
    (
        r#"{{and false (index nil 1)}}|{{or true (index nil 1)}}"#,
        Ok("false|true"),
    ),
    (
        r#"{{range $i, $c := "abc" | len}}{{$i}}{{end}}"#,
        Err(
            r#"template: version:1:26: executing "version" at <len>: can't use 3 to iterate over more than one variable"#,
        ),
    ),
    (
        r#"{{range $i, $e := slice "abc" 1}}x{{end}}"#,
        Err(r#"template: version:1:30: executing "version" at <1>: range can't iterate over bc"#),
    ),
    (
        r#"{{$x := 1}}{{if true}}{{$x = 2}}{{$y := 3}}{{end}}{{$x}}"#,
        Ok("2"),
    ),
    (
        r#"{{printf "%6.2f|%-6.2f|%06.2f|%+.3g|%g|%G|%e" 3.14159 3.14159 -3.14159 123456.0 0.0001 1e-7 0.0}}"#,
        Ok("  3.14|3.14  |-03.14|+1.23e+05|0.0001|1E-07|0.000000e+00"),
    ),
    (
        r#"{{printf "%x|%X|%o|%b|%08b|%#b|%#o|%O" -255 255 -8 -5 5 5 8 8}}"#,
        Ok("-ff|FF|-10|-101|00000101|0b101|010|0o10"),
    ),
    (
        r#"{{printf "%3c|%-4q|%#U|%U|%#q|%+q" 65 66 9731 128512 "back`tick" "é"}}"#,
        Ok(r#"  A|'B' |U+2603 '☃'|U+1F600|"back`tick"|"\u00e9""#),
    ),
    (
        r#"{{printf "%v|%d|%s" (split "a b" " ") (slice (split "1 2" " ") 0 1) true}}"#,
        Ok("[a b]|[%!d(string=1)]|%!s(bool=true)"),
    ),
    (
        r#"{{print nil 1 "a" nil}}|{{println}}|{{print}}"#,
        Ok("<nil> 1a<nil>|\n|"),
    ),
    (
        r#"{{len "héllo"}}|{{index "abc" 1}}|{{slice "héllo" 0 3}}"#,
        Ok("6|98|hé"),
    ),
    (
        "{{eq 1 1.0}}",
        Err(
            r#"template: version:1:2: executing "version" at <eq 1 1.0>: error calling eq: incompatible types for comparison"#,
        ),
    ),
    (
        r#"{{lt "a" 1}}"#,
        Err(
            r#"template: version:1:2: executing "version" at <lt "a" 1>: error calling lt: incompatible types for comparison"#,
        ),
    ),
    (
        r#"{{html "a" "<b>" 3}}|{{urlquery "x y" 2}}|{{js "\u2028</script>"}}"#,
        Ok(r"a&lt;b&gt;3|x+y2|\u2028\u003C/script\u003E"),
    ),
    (r#"{{- "a" -}} {{- "b" -}}"#, Ok("ab")),
    ("{{23 -}} < {{- 45}}", Ok("23<45")),
    ("{{/* c */ -}}   x", Ok("x")),
    (
        r#"{{template "missing" .}}"#,
        Err(
            r#"template: version:1:11: executing "version" at <{{template "missing" .}}>: template "missing" not defined"#,
        ),
    ),
    (
        r#"{{define "a"}}{{template "b" .}}{{end}}{{define "b"}}[{{.}}]{{end}}{{template "a" 3}}"#,
        Ok("[3]"),
    ),
    (
        r#"{{range $k, $v := "x"}}{{end}}"#,
        Err(r#"template: version:1:18: executing "version" at <"x">: range can't iterate over x"#),
    ),
    (r#"{{3 | printf "%d %s" }}"#, Ok("3 %!s(MISSING)")),
    (
        "{{not}}",
        Err(
            r#"template: version:1:2: executing "version" at <not>: wrong number of args for not: want 1 got 0"#,
        ),
    ),
    (
        "{{index 1 2}}",
        Err(
            r#"template: version:1:2: executing "version" at <index 1 2>: error calling index: can't index item of type int"#,
        ),
    ),
    ("{{print (1)}}", Ok("1")),
    (
        "{{nil}}",
        Err(r#"template: version:1:2: executing "version" at <nil>: nil is not a command"#),
    ),
    (
        "{{(nil)}}",
        Err(r#"template: version:1:3: executing "version" at <nil>: nil is not a command"#),
    ),
    (
        "{{1 2}}",
        Err(
            r#"template: version:1:2: executing "version" at <1>: can't give argument to non-function 1"#,
        ),
    ),
];

#[test]
fn go_documented_cases_as_the_docker_cli_runs_them() {
    let funcs = Funcs::docker();
    let mut failures = Vec::new();
    for (src, want) in GO_DOC_CASES {
        let got = Template::parse_named("version", src, &funcs)
            .and_then(|t| t.execute(&json!({}), &funcs))
            .map_err(|e| e.to_string());
        let want = want.map(str::to_string).map_err(str::to_string);
        if got != want {
            failures.push(format!("{src}\n  want {want:?}\n  got  {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A caller's own function, as templated secrets will add `{{secret "NAME"}}`: it is known
/// at parse time, gets typed arguments, and its failure is Go's "error calling".
#[test]
fn a_caller_adds_functions_and_methods() {
    let mut funcs = Funcs::docker();
    funcs.insert("secret", Arity::Exact(1), |a| match a.str(0)? {
        "db_pw" => Ok(Value::String("s3cr3t".into())),
        other => Err(FuncError::call(format!("secret {other:?} is not granted"))),
    });
    funcs.insert_method("Greet", Arity::Exact(1), |recv, a| {
        Ok(Value::String(format!(
            "{} {}",
            a.str(0)?,
            recv["Name"].as_str().unwrap_or("")
        )))
    });
    let run = |src: &str| {
        Template::parse(src, &funcs)
            .and_then(|t| t.execute(&json!({"Name": "web", "Sub": {"Name": "db"}}), &funcs))
            .map_err(|e| e.to_string())
    };
    assert_eq!(run(r#"pw={{ secret "db_pw" }}"#).unwrap(), "pw=s3cr3t");
    assert_eq!(
        run(r#"{{ "db_pw" | secret | printf "%q" }}"#).unwrap(),
        r#""s3cr3t""#
    );
    assert_eq!(
        run(r#"{{ secret "other" }}"#).unwrap_err(),
        r#"template: :1:3: executing "" at <secret "other">: error calling secret: secret "other" is not granted"#
    );
    assert_eq!(
        run("{{ secret 3 }}").unwrap_err(),
        r#"template: :1:10: executing "" at <3>: expected string; found 3"#
    );
    assert_eq!(
        run("{{ secret .Name.Nope }}").unwrap_err(),
        r#"template: :1:15: executing "" at <.Name.Nope>: can't evaluate field Nope in type string"#
    );
    assert_eq!(
        run("{{ nope }}").unwrap_err(),
        r#"template: :1: function "nope" not defined"#
    );
    assert_eq!(
        run(r#"{{.Greet "hi"}}|{{.Sub.Greet "hey"}}"#).unwrap(),
        "hi web|hey db"
    );
    // Builtins and docker's functions are not disturbed by the additions.
    assert!(Funcs::builtin().contains("printf") && !Funcs::builtin().contains("json"));
    assert!(funcs.contains("json") && funcs.contains("secret"));
}

#[test]
fn missing_keys_and_positions_across_lines() {
    let funcs = Funcs::builtin();
    let data = json!({"A": 1, "B": null, "L": {"k": "v"}, "M": {"n": 1}});
    let run = |src: &str, mk: MissingKey| {
        Template::parse_named("t", src, &funcs)
            .map(|t| t.missing_key(mk))
            .and_then(|t| t.execute(&data, &funcs))
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        run("{{.Nope}}|{{.L.nope}}", MissingKey::Default).unwrap(),
        "<no value>|<no value>"
    );
    // Zero values: a map of strings gives "", other maps nil.
    assert_eq!(
        run("[{{.L.nope}}]{{.M.nope}}", MissingKey::Zero).unwrap(),
        "[]<nil>"
    );
    assert_eq!(
        run("{{.A}}\n  {{.L.nope}}", MissingKey::Error).unwrap_err(),
        r#"template: t:2:6: executing "t" at <.L.nope>: map has no entry for key "nope""#
    );
    assert_eq!(
        run("{{.A}}\n  {{.B.C}}", MissingKey::Default).unwrap_err(),
        r#"template: t:2:6: executing "t" at <.B.C>: nil pointer evaluating interface {}.C"#
    );
    assert_eq!(
        run(
            "a\n{{if .A}}\n{{$x := 1}}{{end}}{{$x}}",
            MissingKey::Default
        )
        .unwrap_err(),
        r#"template: t:3: undefined variable "$x""#
    );
    // What was written before a failure stays written, as with Go's writer.
    let t = Template::parse("ab{{.B.C}}", &funcs).unwrap();
    let mut out = String::new();
    let e = t.execute_into(&mut out, &data, &funcs).unwrap_err();
    assert_eq!(out, "ab");
    assert!(
        matches!(
            e,
            Error::Exec {
                line: 1,
                column: 6,
                ..
            }
        ),
        "{e:?}"
    );
}

/// A struct field that JSON omits (Go's `omitempty`) is there for the template, not for `json`.
#[test]
fn omitted_fields_and_bytes() {
    use lockbox_gotemplate::{bytes_value, omitted_value};
    let funcs = Funcs::docker();
    let data = json!({"Spec": {
        "Name": "n",
        "Driver": omitted_value(Value::Null),
        "Data": bytes_value(b"hi\n"),
        "Empty": omitted_value(bytes_value(b"")),
    }});
    let run = |src: &str| {
        Template::parse(src, &funcs)
            .map(|t| t.missing_key(MissingKey::Error))
            .and_then(|t| t.execute(&data, &funcs))
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        run("{{.Spec.Driver}}|{{.Spec.Empty}}|{{.Spec.Data}}").unwrap(),
        "<nil>|[]|[104 105 10]"
    );
    assert_eq!(
        run(r#"{{printf "%s|%q|%x|%v" .Spec.Data .Spec.Data .Spec.Data .Spec.Data}}"#).unwrap(),
        "hi\n|\"hi\\n\"|68690a|[104 105 10]"
    );
    assert_eq!(
        run("{{json .Spec}}").unwrap(),
        r#"{"Name":"n","Data":"aGkK"}"#
    );
    assert_eq!(run("{{len .Spec.Data}} {{index .Spec.Data 0}} {{slice .Spec.Data 0 2 | printf \"%s\"}} {{range .Spec.Data}}{{.}},{{end}}").unwrap(), "3 104 hi 104,105,10,");
    assert_eq!(
        run("{{if .Spec.Driver}}x{{else}}none{{end}} {{index .Spec \"Driver\"}}").unwrap(),
        "none <nil>"
    );
    assert_eq!(
        run("{{.Spec.Data.X}}").unwrap_err(),
        r#"template: :1:7: executing "" at <.Spec.Data.X>: can't evaluate field X in type []uint8"#
    );
}

#[test]
fn recursion_is_bounded() {
    let funcs = Funcs::builtin();
    let t = Template::parse(
        r#"{{define "r"}}{{template "r" .}}{{end}}{{template "r" 1}}"#,
        &funcs,
    )
    .unwrap();
    let e = t.execute(&json!({}), &funcs).unwrap_err().to_string();
    assert!(e.ends_with("exceeded maximum template depth (100)"), "{e}");
}
