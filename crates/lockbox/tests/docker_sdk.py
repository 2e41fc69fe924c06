"""The Docker SDK for Python (`docker` on PyPI) against lockbox's Docker API socket.

Run by crates/lockbox/tests/docker_sdk.rs: `python docker_sdk.py SOCKET PREFIX`. Every object
it creates is named PREFIX…; it prints one line per check and exits non-zero on the first
failure (an assertion with what was expected and what came back).
"""
import base64
import sys
import time

import docker
from docker.errors import APIError, NotFound

SOCK, PREFIX = sys.argv[1], sys.argv[2]
URL = f"unix://{SOCK}"
checks = 0


def check(what, got, want):
    global checks
    assert got == want, f"{what}: got {got!r}, want {want!r}"
    checks += 1
    print(f"ok {what}")


def api_error(what, call, status, message):
    """`call` raises the SDK's APIError (or a subclass) with this status and message."""
    try:
        call()
    except APIError as e:
        check(f"{what}: status", e.status_code, status)
        check(f"{what}: message", e.explanation, message)
        return e
    raise AssertionError(f"{what}: no error raised")


# The version the SDK negotiates (version="auto": GET /version), and clients pinned as the
# SDK's own test tooling pins them (1.45) and at Docker 28's API (1.51).
auto = docker.DockerClient(base_url=URL, version="auto")
check("negotiated API version", auto.api.api_version, "1.51")
v = auto.version()
check("/version ApiVersion", v["ApiVersion"], "1.51")
check("/version MinAPIVersion", v["MinAPIVersion"], "1.24")
check("/version names the Engine component", v["Components"][0]["Name"], "Engine")
info = auto.info()
check("/info Swarm state", info["Swarm"]["LocalNodeState"], "active")
check("/info is a manager", info["Swarm"]["ControlAvailable"], True)
check("ping", auto.ping(), True)
c = docker.DockerClient(base_url=URL, version="1.45")
c51 = docker.DockerClient(base_url=URL, version="1.51")
api_error(
    "API 1.52",
    lambda: docker.DockerClient(base_url=URL, version="1.52").secrets.list(),
    400,
    "client version 1.52 is too new. Maximum supported API version is 1.51",
)
# (Below 1.24 the SDK itself refuses to start; the raw-API comparison covers that answer.)

t0 = time.time()

# Secrets: create, list, get, remove, through the high-level client.
name = f"{PREFIX}_db"
s = c.secrets.create(name=name, data=b"s3cr3t", labels={"team": "pay"})
check("secret create returns a 25-character ID", len(s.id), 25)
s = c.secrets.get(s.id)
check("secret get: name", s.name, name)
check("secret get: labels", s.attrs["Spec"]["Labels"], {"team": "pay"})
check("secret get: no data", "Data" in s.attrs["Spec"], False)
check("secret get by name", c51.secrets.get(name).id, s.id)
check(
    "secret list by name prefix",
    [x.id for x in c.secrets.list(filters={"name": f"{PREFIX}_d"})],
    [s.id],
)
check("secret list by label", [x.name for x in c.secrets.list(filters={"label": "team=pay"})], [name])
e = api_error(
    "duplicate secret",
    lambda: c.secrets.create(name=name.upper(), data=b"x"),
    409,
    f"rpc error: code = AlreadyExists desc = secret {name.upper()} already exists",
)
check("duplicate is an APIError, not NotFound", isinstance(e, NotFound), False)
e = api_error("missing secret", lambda: c.secrets.get(f"{PREFIX}_nope"), 404, f"secret {PREFIX}_nope not found")
check("missing secret raises NotFound", isinstance(e, NotFound), True)
api_error(
    "bad name",
    lambda: c.secrets.create(name=f"{PREFIX} bad", data=b"x"),
    400,
    "rpc error: code = InvalidArgument desc = invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]",
)

# Update (labels only): the SDK has no method for it, so through its HTTP layer, as the
# SDK's own callers do; field names in lower case, as Go's decoder accepts them.
api = c.api
version = s.attrs["Version"]["Index"]
r = api._post_json(
    api._url("/secrets/{0}/update", s.id),
    params={"version": version},
    data={"name": name, "labels": {"team": "pay", "tier": "db"}},
)
api._raise_for_status(r)
check("secret update: labels", c.secrets.get(s.id).attrs["Spec"]["Labels"], {"team": "pay", "tier": "db"})
r = api._post_json(api._url("/secrets/{0}/update", s.id), params={"version": version}, data={"Name": name})
check("stale update: status", r.status_code, 500)
check("stale update: message", r.json()["message"], "rpc error: code = Unknown desc = update out of sequence")
r = api._post_json(
    api._url("/secrets/{0}/update", s.id),
    params={"version": c.secrets.get(s.id).attrs["Version"]["Index"]},
    data={"Name": name, "Data": base64.b64encode(b"other").decode()},
)
check("data update refused", (r.status_code, r.json()["message"]), (400, "rpc error: code = InvalidArgument desc = only updates to Labels are allowed"))

# Configs, with templating as the SDK sends it: {"name": "golang"}, lower case.
cname = f"{PREFIX}_tpl"
cfg = c.configs.create(name=cname, data="svc={{ .Service.Name }}", templating={"name": "golang"})
got = c.configs.get(cfg.id)
check("config templating stored", got.attrs["Spec"]["Templating"], {"Name": "golang"})
check("config data returned", base64.b64decode(got.attrs["Spec"]["Data"]), b"svc={{ .Service.Name }}")
api_error(
    "templating at API 1.36",
    lambda: docker.DockerClient(base_url=URL, version="1.36").configs.create(
        name=f"{PREFIX}_old", data="x", templating={"name": "golang"}
    ),
    400,
    "config templating is not supported on the specified API version: 1.36",
)
r = api._post_json(
    api._url("/secrets/create"),
    data={"name": f"{PREFIX}_stpl", "data": base64.b64encode(b"x").decode(), "templating": {"name": "golang"}},
)
api._raise_for_status(r)
check("secret templating stored", c.secrets.get(f"{PREFIX}_stpl").attrs["Spec"]["Templating"], {"Name": "golang"})
c.secrets.get(f"{PREFIX}_stpl").remove()

# Remove, and remove again.
check("secret remove", s.remove(), True)
e = api_error("remove twice", lambda: c.api.remove_secret(s.id), 404, f"secret {s.id} not found")
check("remove twice raises NotFound", isinstance(e, NotFound), True)
cfg.remove()
check("nothing of ours is left", [x.name for x in c.secrets.list(filters={"name": PREFIX})], [])

# Events: replayed from `since`, the stream closes at `until`, Docker's filters applied.
time.sleep(0.05)
t1 = time.time()
start = time.monotonic()
events = list(c.events(since=t0, until=t1, decode=True, filters={"type": "secret"}))
check("events stream closed at until (a past until: at once)", time.monotonic() - start < 5, True)
check(
    "secret events since t0",
    [(ev["Action"], ev["Actor"]["Attributes"]["name"]) for ev in events],
    [("create", name), ("update", name), ("create", f"{PREFIX}_stpl"), ("remove", f"{PREFIX}_stpl"), ("remove", name)],
)
check("events have the swarm scope", {ev["scope"] for ev in events}, {"swarm"})
config_events = list(c.events(since=t0, until=t1, decode=True, filters={"config": cname, "event": "remove"}))
check("config remove event by name", [ev["Type"] for ev in config_events], ["config"])
# A future until: live events until then, then the stream ends by itself.
later = time.time() + 1.5
stream = c.events(since=t1, until=later, decode=True, filters={"type": "secret"})
live = c.secrets.create(name=f"{PREFIX}_live", data=b"x")
live.remove()
seen = [(ev["Action"], ev["Actor"]["Attributes"]["name"]) for ev in stream]
check("live events up to until", seen, [("create", f"{PREFIX}_live"), ("remove", f"{PREFIX}_live")])
check("stream ended at until", time.time() >= later - 0.05, True)

print(f"{checks} checks passed")
