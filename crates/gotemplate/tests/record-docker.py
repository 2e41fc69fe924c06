#!/usr/bin/env python3
"""Records what the real docker CLI prints for each template in CASES, against a real
single-node Swarm, into docker-recorded.json next to this file (read by gotemplate.rs).

Run as root on a machine whose dockerd answers: python3 record-docker.py [docker binary].
If the Swarm is inactive it is initialised on 127.0.0.1 and left again afterwards; the
secrets and configs it creates (prefix 'gotemplate-<pid>-') are removed at the end.
"""
import json
import os
import subprocess
import sys

DOCKER = sys.argv[1] if len(sys.argv) > 1 else "/usr/local/bin/docker"
HERE = os.path.dirname(os.path.abspath(__file__))
P = f"gotemplate-{os.getpid()}-"

# (command, format). Commands: "secret inspect" and "config inspect" run on the object named
# "a"; "secret ls" and "config ls" list this run's objects only (--filter name=PREFIX).
# Fields that change between runs (CreatedAt in ls) are left out.
INSPECT = [
    # Docker's formatting guide (docs/config/formatting.md)
    '{{join (split "a:b:c" ":") " , "}}',
    "{{json .Spec.Labels}}",
    "{{json .}}",
    '{{lower "HELLO"}} {{upper .Spec.Name}} {{title "hello wide-world_x"}}',
    '{{split "a:b:c" ":"}}',
    "{{pad .Spec.Name 3 2}}|",
    '{{pad "" 3 2}}|',
    "{{truncate .Spec.Name 3}}|{{truncate .Spec.Name 100}}",
    "{{println .Spec.Name}}",
    "{{.Spec.Name}}",
    "{{.Spec.Labels}}",
    '{{index .Spec.Labels "env"}}|{{index .Spec.Labels "nope"}}|',
    "{{.Spec.Labels.env}}",
    "{{.Version.Index}}",
    # Go's text/template documentation: actions, pipelines, control structures
    '{{if eq .Spec.Labels.env "prod"}}P{{else if eq .Spec.Labels.env "dev"}}D{{else}}O{{end}}',
    '{{if ne .Spec.Labels.env "prod"}}P{{else if eq .Spec.Labels.env "dev"}}D{{else}}O{{end}}',
    "{{with .Spec.Labels.env}}env={{.}}{{end}}",
    '{{with index .Spec.Labels "nope"}}x{{else}}none{{end}}',
    "{{range $k, $v := .Spec.Labels}}{{$k}}={{$v}};{{end}}",
    "{{range .Spec.Labels}}[{{.}}]{{end}}",
    '{{range $i, $v := split "a,b,c,d" ","}}{{if eq $v "c"}}{{break}}{{end}}{{$i}}{{$v}} {{end}}',
    '{{range $v := split "a,b,c,d" ","}}{{if eq $v "b"}}{{continue}}{{end}}{{$v}}{{end}}',
    '{{range slice (split "a" ",") 1}}x{{else}}empty{{end}}',
    "{{range 3}}{{.}}{{end}}",
    "{{len .Spec.Labels}} {{len .Spec.Name}} {{len (split \"a,b\" \",\")}}",
    '{{$n := .Spec.Name}}{{$n}}-{{$n = "changed"}}{{$n}}',
    "{{range $k, $v := .Spec.Labels}}{{$.Spec.Name}}:{{$k}} {{end}}",
    "  {{- .Spec.Name -}}  |",
    "a {{- /* a comment */ -}} b{{/* another */}}c",
    '{{define "T"}}<{{.}}>{{end}}{{template "T" .Spec.Name}}{{template "T" "x"}}',
    '{{block "B" .Spec.Labels.env}}[{{.}}]{{end}}',
    '{{.Spec.Name | upper | printf "%s!"}}',
    '{{"x" | printf "%s-%s" "y"}}',
    '{{(index .Spec.Labels "env") | len}}',
    "{{(.Spec).Name}}",
    # printf and Go's fmt verbs
    '{{printf "%s|%5s|%-5s|%.2s|%q|%x|%X|%v" "str" "ab" "ab" "abc" "q\\"t" "hi" "hi" .Spec.Labels}}',
    '{{printf "%d|%5d|%-5d|%05d|%x|%X|%#x|%o|%#o|%b|%c|%U|%+d|% d|%q" 42 42 42 42 255 255 255 8 8 5 65 65 42 42 65}}',
    '{{printf "%f|%.2f|%e|%E|%g|%g|%g|%g|%v|%8.3f|%-8.2f|" 3.14159 3.14159 1234.5678 1234.5678 0.00001 1000000.0 123456.0 1e21 2.5 3.14159 2.5}}',
    '{{printf "%v|%v|%v" 1e6 100000.0 0.000012}}',
    '{{printf "%T %T %T %T %T" 1 1.5 "s" true .Spec.Labels}}',
    '{{printf "%t|%v|%5t" true false true}}',
    '{{printf "%d" "str"}}|{{printf "%s"}}|{{printf "%s" "a" "b"}}|{{printf "%!"}}|{{printf "%z" 1}}',
    '{{printf "%[2]s %[1]s" "a" "b"}}|{{printf "%*d|%-*d|%.*f" 5 1 4 2 2 3.14159}}',
    '{{printf "%s|%v|%d" .Spec.Labels (split "a,b" ",") (len "abc")}}',
    '{{printf "%q" (split "a,b" ",")}}',
    '{{printf "%5.1f|%+.1e|%x" -3.14159 12345.678 "é"}}',
    '{{printf "%v %s" nil nil}}',
    # the other predefined functions
    '{{slice "abcdef" 1 3}}|{{slice "abcdef" 2}}|{{slice (split "a,b,c,d" ",") 1 3}}',
    '{{and 1 0 2}}|{{and 1 2}}|{{or 0 "" "x"}}|{{or 0 ""}}|{{not true}}|{{not ""}}|{{and .Spec.Name "z"}}',
    '{{lt 1 2}} {{le 2 2}} {{gt "b" "a"}} {{ge 1 2}} {{ne 1 2}} {{eq 1 2 3 1}} {{eq "a" "a"}} {{lt 1.5 2.5}}',
    '{{print "a" 1 2 "b" 3.5 true}}|{{print 1 2}}|{{println "a" 1}}|',
    "{{html \"<a href='x'>&\\\"</a>\"}}|{{js \"it's <b>=\\\"x\\\"&\"}}|{{urlquery \"a b&c=d/é?\"}}",
    "{{html 1 \"<\"}}",
    "{{0x1F}} {{1e3}} {{'a'}} {{-5}} {{1_000}} {{0o17}} {{017}} {{0b101}} {{1.50}} {{true}}",
    '{{"quoted\\t\\u00e9"}}|{{`raw\\t`}}',
    # errors
    "{{.Foo}}",
    "{{.Spec.Foo.Bar}}",
    "{{upper 1}}",
    "{{nofunc}}",
    "{{if}}x{{end}}",
    "{{.Spec.Name",
    "{{if .Spec.Name}}x",
    "{{len 3}}",
    "{{index .Spec.Labels 1}}",
    "{{index (split \"a\" \",\") 5}}",
    "{{range .Spec.Name}}x{{end}}",
    "{{break}}",
    "{{$x}}",
    "{{upper}}",
    "{{.Spec.Name 1}}",
    '{{template "nope"}}',
    '{{lt true false}}',
    '{{eq 1 "a"}}',
    "{{printf}}",
    "{{3 | printf}}",
    '{{"a" | 3}}',
    "{{)}}",
    "{{.Spec.Name | join \",\"}}",
    # typed Go structs and []byte: known to differ (see gotemplate.rs)
    "{{.Spec}}",
    "{{.Version}}",
]
CONFIG_INSPECT = [
    '{{printf "%s" .Spec.Data}}',
    "{{.Spec.Data}}",
    "{{json .Spec.Data}}",
    "{{.Spec.Name}} {{json .Spec.Labels}}",
]
LS = [
    "{{.Name}}",
    "{{.Name}}\\t{{.Label \"env\"}}",
    "{{.Name}}\\n{{.ID}}",
    "table {{.Name}}\\t{{.Label \"env\"}}",
    'table {{.Name}}\\t{{.Label "com.example.some-label_x"}}',
    "table {{.ID}}\\t{{.Name}}",
    "table {{upper .Name}}\\t{{pad .Name 1 1}}\\t{{json .Name}}\\t{{truncate .Name 5}}",
    "table {{.Name}}:{{.Labels}}",
    "table {{.Name}}",
    "table   {{.Name}}  ",
    "{{if eq .Label \"env\" \"prod\"}}{{.Name}}{{end}}",
    "{{.Foo}}",
    "table {{.Foo}}",
    "{{json .Name}}",
]
SECRET_LS = ["table {{.Name}}\\t{{.Driver}}\\t{{.Labels}}", "{{.Name}}\\t{{.Driver}}"]


def run(args, stdin=None):
    p = subprocess.run([DOCKER, *args], input=stdin, capture_output=True, text=True)
    return {"stdout": p.stdout, "stderr": p.stderr, "code": p.returncode}


def must(args, stdin=None):
    r = run(args, stdin)
    if r["code"] != 0:
        sys.exit(f"docker {' '.join(args)}: {r['stderr']}")
    return r["stdout"]


state = must(["info", "--format", "{{.Swarm.LocalNodeState}}"]).strip()
initialised = False
if state == "inactive":
    must(["swarm", "init", "--advertise-addr", "127.0.0.1"])
    initialised = True
elif state != "active":
    sys.exit(f"swarm is {state}")
try:
    must(["secret", "create", "--label", "env=prod", "--label", "tier=db", P + "a", "-"], "s3cr3t")
    must(["secret", "create", "--label", "env=dev", P + "b", "-"], "other")
    must(["config", "create", "--label", "env=prod", P + "a", "-"], "hello world\n")
    must(["config", "create", "--label", "env=dev", P + "b", "-"], "second")
    out = {
        "recorded_with": must(["version", "--format", "CLI {{.Client.Version}}, Engine {{.Server.Version}}"]).strip(),
        "prefix": P,
        "objects": {
            kind: json.loads(must([kind, "inspect", P + "a", P + "b"])) for kind in ("secret", "config")
        },
        "cases": [],
    }
    for kind, fmts in (("secret", INSPECT), ("config", INSPECT[:12] + CONFIG_INSPECT)):
        for f in fmts:
            out["cases"].append({"cmd": f"{kind} inspect", "format": f, **run([kind, "inspect", "--format", f, P + "a"])})
    for kind, fmts in (("secret", LS + SECRET_LS), ("config", LS)):
        for f in fmts:
            r = run([kind, "ls", "--filter", "name=" + P, "--format", f])
            out["cases"].append({"cmd": f"{kind} ls", "format": f, **r})
finally:
    for kind in ("secret", "config"):
        run([kind, "rm", P + "a", P + "b"])
    if initialised:
        must(["swarm", "leave", "--force"])
text = json.dumps(out, indent=1, ensure_ascii=False)
with open(os.path.join(HERE, "docker-recorded.json"), "w") as f:
    f.write(text + "\n")
os.chmod(os.path.join(HERE, "docker-recorded.json"), 0o644)
print(f"{len(out['cases'])} cases recorded with {out['recorded_with']}")
