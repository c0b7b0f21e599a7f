#!/usr/bin/env python3
"""Checks of the deployment files, run by scripts/deploy-check.sh.

    deploy-check.py files BIN        parse every YAML file; check that the
                                     Dockerfile, compose file, systemd units,
                                     Kubernetes manifests and .env.example agree
                                     with each other and with BIN --help (stop
                                     timeouts above the drain timeout, ports,
                                     probes, every variable listed, ...)
    deploy-check.py dockerfile       print the final stage's COPY source, USER,
                                     EXPOSE, HEALTHCHECK and ENTRYPOINT as shell
                                     assignments (for the scratch-image run)
    deploy-check.py notify BIN       run BIN under a fake systemd notify socket:
                                     READY=1 when listening; STOPPING=1 and the
                                     STATUS line when a drain starts; exit 0
    deploy-check.py syscalls FILE    check the system calls in an `strace -c -f`
                                     summary against the unit's SystemCallFilter

Needs PyYAML (pip install pyyaml). Exits 1 with one line per problem.
"""

import base64
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT = "contrib/systemd/wsnotify.service"
# Socket activation: the socket unit and the template its instances share.
SOCKET_UNIT = "contrib/systemd/wsnotify.socket"
TEMPLATE = "contrib/systemd/wsnotify@.service"
# What the template may add to wsnotify.service's [Service] section: the
# shared socket, one user for both instances, and the directory of the
# hand-over socket through which they pass the stream.
TEMPLATE_ONLY = {"Sockets", "User", "RuntimeDirectory", "RuntimeDirectoryMode",
                 "RuntimeDirectoryPreserve"}
# The template's one extra variable: where the instances hand over.
TEMPLATE_HANDOVER = "WSNOTIFY_HANDOVER="
COMPOSE = "docker-compose.yml"
K8S_DIR = "contrib/k8s"
STATIC_BIN = "target/x86_64-unknown-linux-musl/release/wsnotify"
CLOSE_GRACE_S = 5  # the server's wait for the clients' Close after the deadline

problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


# ------------------------------------------------------------------ durations
def wsnotify_duration(text):
    """Seconds of a wsnotify duration: 1800, 0.5, 250ms, 10s, 5m, 1h."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return float(m.group(1)) * scale


def systemd_timespan(text):
    """Seconds of a systemd time span: 90, 31min, 1h 2min, 30s, infinity."""
    if text.strip() == "infinity":
        return float("inf")
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "second": 1, "seconds": 1,
             "m": 60, "min": 60, "minute": 60, "minutes": 60,
             "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600, "": 1}
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text)
    if not parts or re.sub(r"[\d.\sa-z]", "", text):
        raise ValueError(f"not a time span: {text!r}")
    for number, unit in parts:
        if unit not in units:
            raise ValueError(f"unknown unit {unit!r} in {text!r}")
        total += float(number) * units[unit]
    return total


def compose_duration(text):
    """Seconds of a compose duration: 31m, 1h30m, 90s, 1m30s."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text):
        raise ValueError(f"not a compose duration: {text!r}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


# ------------------------------------------------------------------ --help
def options_from_help(binary):
    """{VARIABLE: default} from `BIN --help`."""
    out = subprocess.run([binary, "--help"], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    options = {}
    for line in out.splitlines():
        m = re.search(r"\b(WSNOTIFY_[A-Z0-9_]+)\b.*\(default: ([^)]*)\)\s*$", line)
        if m:
            options[m.group(1)] = m.group(2)
    if len(options) < 10:
        raise SystemExit(f"deploy-check.py: cannot read the options from {binary} --help")
    return options


# ------------------------------------------------------------------ Dockerfile
def dockerfile_instructions(path="Dockerfile"):
    """(INSTRUCTION, arguments) of the last stage, continuations joined."""
    lines, current = [], ""
    for raw in read(path).splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    stage = []
    for line in lines:
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stage = []
        stage.append((word.upper(), rest.strip()))
    return stage


def exec_form(text):
    """The argv of a JSON exec form, or None."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def dockerfile_facts(path="Dockerfile"):
    facts = {"from": None, "copy_src": None, "copy_dst": None, "user": None,
             "expose": None, "stopsignal": None, "healthcheck": None, "entrypoint": None}
    for word, rest in dockerfile_instructions(path):
        if word == "FROM":
            facts["from"] = rest.split()[0]
        elif word == "COPY":
            args = [a for a in rest.split() if not a.startswith("--")]
            facts["copy_src"], facts["copy_dst"] = args[0], args[-1]
        elif word == "USER":
            facts["user"] = rest
        elif word == "EXPOSE":
            facts["expose"] = rest.split("/")[0]
        elif word == "STOPSIGNAL":
            facts["stopsignal"] = rest
        elif word == "HEALTHCHECK":
            m = re.search(r"\bCMD\s+(.*)$", rest)
            facts["healthcheck"] = exec_form(m.group(1)) if m else None
        elif word == "ENTRYPOINT":
            facts["entrypoint"] = exec_form(rest)
    return facts


def check_dockerfile(path, drain_s):
    f = dockerfile_facts(path)
    if f["from"] not in ("scratch",) and "distroless/static" not in (f["from"] or ""):
        problem(path, f"the final stage is FROM {f['from']}, not scratch or distroless static")
    if path == "Dockerfile" and f["copy_src"] != STATIC_BIN:
        problem(path, f"COPY takes {f['copy_src']}, not {STATIC_BIN} (scripts/build-static.sh)")
    user = (f["user"] or "").split(":")[0]
    if user in ("", "0", "root"):
        problem(path, "USER is missing or root")
    if f["expose"] != "8000":
        problem(path, f"EXPOSE is {f['expose']}, not 8000")
    if f["stopsignal"] != "SIGTERM":
        problem(path, f"STOPSIGNAL is {f['stopsignal']}, not SIGTERM")
    if not f["entrypoint"] or f["entrypoint"][0] != f["copy_dst"]:
        problem(path, f"ENTRYPOINT {f['entrypoint']} does not run the copied {f['copy_dst']}")
    hc = f["healthcheck"]
    if not hc or hc[0] != f["copy_dst"] or hc[1:2] != ["healthcheck"]:
        problem(path, f"HEALTHCHECK is not an exec-form `{f['copy_dst']} healthcheck`: {hc}")
    text = read(path)
    if "docker stop -t" not in text and path == "Dockerfile":
        problem(path, "the drain timeout is not explained next to `docker stop -t`")
    for t in re.findall(r"(?:stop -t|--stop-timeout)\s+(\d+)", text):
        if int(t) <= drain_s + CLOSE_GRACE_S:
            problem(path, f"a stop timeout of {t} s is not above the drain timeout {drain_s:g} s + {CLOSE_GRACE_S} s")


# ------------------------------------------------------------------ systemd
def unit_settings(path=UNIT):
    """[(section, key, value)] of a unit file."""
    settings, section = [], None
    for raw in read(path).splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if not sep:
            problem(path, f"not a key=value line: {line!r}")
            continue
        settings.append((section, key.strip(), value.strip()))
    return settings


def section_of(path, name):
    """{key: [values]} of one section of a unit file."""
    found = {}
    for section, key, value in unit_settings(path):
        if section == name:
            found.setdefault(key, []).append(value)
    return found


def check_unit(drain_s, max_connections):
    service = section_of(UNIT, "Service")

    def one(key):
        return service.get(key, [None])[-1]

    # The unit's own drain timeout, if it sets one.
    for value in service.get("Environment", []):
        m = re.search(r"WSNOTIFY_DRAIN_TIMEOUT=(\S+)", value)
        if m:
            drain_s = wsnotify_duration(m.group(1))
    want = {"Type": "notify", "Restart": "on-failure", "KillSignal": "SIGTERM",
            "DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
            "PrivateTmp": "yes"}
    for key, value in want.items():
        if one(key) != value:
            problem(UNIT, f"{key}={one(key)}, expected {value}")
    if one("KillMode") not in ("mixed", "control-group"):
        problem(UNIT, f"KillMode={one('KillMode')}: use mixed (SIGTERM to the main process)")
    stop = one("TimeoutStopSec")
    if stop is None or systemd_timespan(stop) <= drain_s + CLOSE_GRACE_S:
        problem(UNIT, f"TimeoutStopSec={stop} is not above the drain timeout {drain_s:g} s + {CLOSE_GRACE_S} s")
    nofile = one("LimitNOFILE")
    if nofile is None or int(nofile.split(":")[-1]) <= max_connections:
        problem(UNIT, f"LimitNOFILE={nofile} leaves no room for {max_connections} connections")
    families = " ".join(service.get("RestrictAddressFamilies", [])).split()
    for family in ("AF_INET", "AF_INET6", "AF_UNIX"):
        if family not in families:
            problem(UNIT, f"RestrictAddressFamilies lacks {family} (AF_UNIX carries sd_notify)")
    if not service.get("ExecStart", [""])[-1].split()[0].endswith("/wsnotify"):
        problem(UNIT, "ExecStart does not run wsnotify")


def check_socket_units(port):
    """The socket-activated pair: the template keeps every setting of
    wsnotify.service (its hardening above all) and serves the socket unit,
    which listens on the default port and starts an instance of it."""
    plain, template = section_of(UNIT, "Service"), section_of(TEMPLATE, "Service")
    handover = [v for v in template.get("Environment", []) if v.startswith(TEMPLATE_HANDOVER)]
    template["Environment"] = [v for v in template.get("Environment", []) if v not in handover]
    runtime = template.get("RuntimeDirectory", [None])[-1]
    if len(handover) != 1 or runtime is None or \
            not handover[0].startswith(f"{TEMPLATE_HANDOVER}/run/{runtime}/"):
        problem(TEMPLATE, f"{TEMPLATE_HANDOVER} {handover} is not one path in RuntimeDirectory={runtime}")
    if template.get("RuntimeDirectoryPreserve") != ["yes"]:
        problem(TEMPLATE, "RuntimeDirectoryPreserve=yes is needed: the instance that stops must not "
                          "remove the directory of the other's hand-over socket")
    for key, values in plain.items():
        if template.get(key) != values:
            problem(TEMPLATE, f"{key}={template.get(key)}, but {UNIT} has {values}")
    for key in template.keys() - plain.keys() - TEMPLATE_ONLY:
        problem(TEMPLATE, f"{key} is not in {UNIT}; keep the two alike")
    if template.get("Sockets") != [os.path.basename(SOCKET_UNIT)]:
        problem(TEMPLATE, f"Sockets={template.get('Sockets')}, expected {os.path.basename(SOCKET_UNIT)}")
    sock = section_of(SOCKET_UNIT, "Socket")
    listen = sock.get("ListenStream", [])
    if len(listen) != 1 or not re.fullmatch(rf"(.*:)?{port}", listen[0]):
        problem(SOCKET_UNIT, f"ListenStream={listen}, expected one on port {port}")
    service = sock.get("Service", [""])[-1]
    if not re.fullmatch(r"wsnotify@[^.]+\.service", service):
        problem(SOCKET_UNIT, f"Service={service!r}: name an instance of {os.path.basename(TEMPLATE)}")


# ------------------------------------------------------------------ YAML
def load_yaml(path):
    import yaml

    try:
        return [d for d in yaml.safe_load_all(read(path)) if d is not None]
    except yaml.YAMLError as e:
        problem(path, f"YAML does not parse: {e}")
        return []


def check_compose(drain_s):
    docs = load_yaml(COMPOSE)
    if len(docs) != 1:
        problem(COMPOSE, "expected one YAML document")
        return
    services = docs[0].get("services", {})
    ours = {name: s for name, s in services.items() if "build" in s or "wsnotify" in str(s.get("image", ""))}
    if len(ours) < 2:
        problem(COMPOSE, f"expected two wsnotify services, found {sorted(ours)}")
    if not any("redis" in str(s.get("image", "")) for s in services.values()):
        problem(COMPOSE, "no Redis service")
    published = []
    for name, s in ours.items():
        where = f"{COMPOSE} services.{name}"
        grace = s.get("stop_grace_period")
        if grace is None or compose_duration(grace) <= drain_s + CLOSE_GRACE_S:
            problem(where, f"stop_grace_period {grace} is not above the drain timeout {drain_s:g} s + {CLOSE_GRACE_S} s")
        if s.get("init"):
            problem(where, "init: true is not needed (the binary handles SIGTERM as PID 1)")
        if s.get("stop_signal", "SIGTERM") != "SIGTERM":
            problem(where, f"stop_signal {s.get('stop_signal')}")
        for port in s.get("ports", []):
            host, _, container = str(port).rpartition(":")
            if container != "8000":
                problem(where, f"port {port} does not map to the container's 8000")
            published.append(host)
        if "healthcheck" in s:
            problem(where, "overrides the image's HEALTHCHECK")
    if len(set(published)) != len(published):
        problem(COMPOSE, f"a host port is published twice: {published}")


def k8s_documents():
    docs = []
    for name in sorted(os.listdir(os.path.join(ROOT, K8S_DIR))):
        if name.endswith((".yaml", ".yml")):
            path = f"{K8S_DIR}/{name}"
            docs += [(path, d) for d in load_yaml(path)]
    return docs


def check_k8s(drain_s):
    docs = k8s_documents()
    by_kind = {}
    for path, d in docs:
        for field in ("apiVersion", "kind"):
            if field not in d:
                problem(path, f"a document without {field}")
        by_kind.setdefault((d.get("kind"), d.get("metadata", {}).get("name")), (path, d))
    kustomization = by_kind.get(("Kustomization", None))
    if kustomization:
        for resource in kustomization[1].get("resources", []):
            if not os.path.exists(os.path.join(ROOT, K8S_DIR, resource)):
                problem(kustomization[0], f"resource {resource} does not exist")
    if ("Deployment", "wsnotify") not in by_kind or ("Service", "wsnotify") not in by_kind:
        problem(K8S_DIR, "expected a Deployment and a Service named wsnotify")
        return
    path, deployment = by_kind[("Deployment", "wsnotify")]
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    if deployment["spec"]["selector"]["matchLabels"].items() - labels.items():
        problem(path, "the selector does not match the pod labels")
    container = next(c for c in pod["containers"] if c["name"] == "wsnotify")
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    if env.get("WSNOTIFY_DRAIN_TIMEOUT"):
        drain_s = wsnotify_duration(env["WSNOTIFY_DRAIN_TIMEOUT"])
    port = int(env.get("WSNOTIFY_PORT") or 8000)
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    sleep_s = pre_stop.get("sleep", {}).get("seconds")
    if sleep_s is None:
        problem(path, "no preStop sleep")
        sleep_s = 0
    elif not 1 <= sleep_s <= 30:
        problem(path, f"preStop sleep of {sleep_s} s: keep it short")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace <= sleep_s + drain_s + CLOSE_GRACE_S:
        problem(path, f"terminationGracePeriodSeconds {grace} is not above preStop {sleep_s} s + drain {drain_s:g} s + {CLOSE_GRACE_S} s")
    if pod.get("enableServiceLinks", True):
        problem(path, "enableServiceLinks must be false: the Service link variable WSNOTIFY_PORT=tcp://... breaks --port")
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    if port not in ports.values():
        problem(path, f"containerPort does not match WSNOTIFY_PORT {port}")

    def probe_port(probe):
        p = probe.get("httpGet", probe.get("tcpSocket", {})).get("port")
        return ports.get(p, p)

    readiness = container.get("readinessProbe", {})
    if readiness.get("httpGet", {}).get("path") != "/health" or probe_port(readiness) != port:
        problem(path, "the readiness probe must GET /health on the server's port")
    liveness = container.get("livenessProbe")
    if not liveness:
        problem(path, "no liveness probe")
    elif liveness.get("httpGet", {}).get("path") == "/health":
        problem(path, "the liveness probe must not use /health: it answers 503 while draining and would kill the pod mid-drain")
    elif probe_port(liveness) != port and "exec" not in liveness:
        problem(path, "the liveness probe does not target the server's port")
    resources = container.get("resources", {})
    if "memory" not in resources.get("requests", {}) or "memory" not in resources.get("limits", {}):
        problem(path, "set memory requests and limits")
    security = pod.get("securityContext", {})
    if not security.get("runAsNonRoot"):
        problem(path, "runAsNonRoot is not set")
    spath, service = by_kind[("Service", "wsnotify")]
    if service["spec"]["selector"].items() - labels.items():
        problem(spath, "the Service selector does not match the pods")
    for p in service["spec"]["ports"]:
        if ports.get(p.get("targetPort"), p.get("targetPort")) != port:
            problem(spath, f"targetPort {p.get('targetPort')} is not the container's port {port}")


# ------------------------------------------------------------------ .env.example
def check_env_example(options):
    path = ".env.example"
    listed = {}
    for raw in read(path).splitlines():
        m = re.fullmatch(r"#?\s*(WSNOTIFY_[A-Z0-9_]+)=(.*)", raw.strip())
        if m:
            if re.search(r"\s#", m.group(2)) or m.group(2).startswith(('"', "'")):
                problem(path, f"{m.group(1)}: no quotes or inline comments (systemd and docker read them literally)")
            listed[m.group(1)] = m.group(2)
    for var, default in options.items():
        if var not in listed:
            problem(path, f"{var} is missing (default {default})")
            continue
        if default in ("none", "any"):
            continue
        value = listed[var]
        same = value == default or (default == "off" and value.lower() in ("false", "0", "no"))
        if not same:
            problem(path, f"{var}={value}, but the default is {default}")
    for var in listed.keys() - options.keys():
        problem(path, f"{var} is not an option of wsnotify")


def files(binary):
    options = options_from_help(binary)
    drain_s = wsnotify_duration(options["WSNOTIFY_DRAIN_TIMEOUT"])
    max_connections = int(options["WSNOTIFY_MAX_CONNECTIONS"])
    check_dockerfile("Dockerfile", drain_s)
    multistage = "contrib/docker/Dockerfile.multistage"
    if os.path.exists(os.path.join(ROOT, multistage)):
        check_dockerfile(multistage, drain_s)
    check_unit(drain_s, max_connections)
    check_socket_units(int(options["WSNOTIFY_PORT"]))
    check_compose(drain_s)
    check_k8s(drain_s)
    check_env_example(options)


# ------------------------------------------------------------------ notify
def notify(binary):
    """The sd_notify conversation, with this process as the service manager."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        log = open(os.path.join(tmp, "server.log"), "w+")
        env = dict(os.environ, NOTIFY_SOCKET=path, WSNOTIFY_DRAIN_LOG_INTERVAL="1s")
        proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", "0", "--notify-interval", "0"],
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        client = None
        try:
            def message(want, timeout=5):
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    sock.settimeout(max(0.01, deadline - time.monotonic()))
                    try:
                        data = sock.recv(4096).decode()
                    except socket.timeout:
                        break
                    fields = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
                    if want in data:
                        return fields
                raise SystemExit(f"deploy-check.py notify: no {want!r} within {timeout} s; log:\n{read_log(log)}")

            ready = message("READY=1")
            if ready.get("MAINPID") not in (None, str(proc.pid)):
                problem("sd_notify", f"MAINPID={ready.get('MAINPID')}, expected {proc.pid}")
            print(f"deploy-check: sd_notify READY=1 STATUS={ready.get('STATUS')!r}")
            m = re.search(r"listening on http://([\d.]+):(\d+)", read_log(log))
            host, port = m.group(1), int(m.group(2))
            # One WebSocket client, so the drain lasts until it leaves.
            client = socket.create_connection((host, port), timeout=5)
            key = base64.b64encode(os.urandom(16)).decode()
            client.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                            f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
            answer = b""
            while b"welcome" not in answer:
                chunk = client.recv(4096)
                if not chunk:
                    raise SystemExit("deploy-check.py notify: the WebSocket closed before its welcome")
                answer += chunk
            proc.send_signal(15)
            stopping = message("STOPPING=1")
            status = stopping.get("STATUS", "")
            if not re.fullmatch(r"draining 1 connections, deadline in \d+ s", status):
                problem("sd_notify", f"STATUS during the drain is {status!r}")
            if int(stopping.get("EXTEND_TIMEOUT_USEC", "0")) <= 0:
                problem("sd_notify", "no EXTEND_TIMEOUT_USEC during the drain")
            print(f"deploy-check: sd_notify STOPPING=1 STATUS={status!r} "
                  f"EXTEND_TIMEOUT_USEC={stopping.get('EXTEND_TIMEOUT_USEC')}")
            client.close()
            client = None
            code = proc.wait(timeout=10)
            if code != 0:
                problem("sd_notify", f"exit code {code} after the drain, expected 0")
        finally:
            if client:
                client.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            sock.close()


def read_log(log):
    log.flush()
    log.seek(0)
    return log.read()


# ------------------------------------------------------------------ syscalls
def syscall_groups():
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    groups, current = {}, None
    for line in out.splitlines():
        if line.startswith("@"):
            current = line.split()[0]
            groups[current] = []
        elif current and line.strip() and not line.strip().startswith("#"):
            groups[current].append(line.strip())
    return groups


def expand(names, groups, seen=None):
    seen = set() if seen is None else seen
    result = set()
    for name in names:
        if not name.startswith("@"):
            result.add(name)
        elif name not in seen:
            seen.add(name)
            result |= expand(groups.get(name, []), groups, seen)
    return result


def syscalls(summary):
    used = set()
    for line in open(summary, encoding="utf-8"):
        fields = line.split()
        if fields and re.fullmatch(r"[a-z_0-9]+", fields[-1]) and fields[-1] != "total" \
                and re.match(r"^\s*[\d.]+\s", line):
            used.add(fields[-1])
    if not used:
        raise SystemExit(f"deploy-check.py syscalls: no system calls in {summary}")
    groups = syscall_groups()
    allowed, denied, allow_list_seen = set(), set(), False
    for section, key, value in unit_settings():
        if section == "Service" and key == "SystemCallFilter":
            if value.startswith("~"):
                denied |= expand(value[1:].split(), groups)
            else:
                allow_list_seen = True
                allowed |= expand(value.split(), groups)
    if not allow_list_seen:
        problem(UNIT, "no SystemCallFilter allow list")
    blocked = sorted(s for s in used if s not in allowed or s in denied)
    for s in blocked:
        problem(UNIT, f"SystemCallFilter blocks {s}, which wsnotify calls")
    print(f"deploy-check: {len(used)} system calls used, all allowed by the unit's SystemCallFilter"
          if not blocked else f"deploy-check: {len(blocked)} of {len(used)} system calls blocked")


def main(argv):
    if len(argv) >= 2 and argv[1] == "files" and len(argv) == 3:
        files(argv[2])
    elif len(argv) == 2 and argv[1] == "dockerfile":
        f = dockerfile_facts()
        for key in ("copy_src", "copy_dst", "user", "expose"):
            print(f"docker_{key}={shlex.quote(f[key] or '')}")
        print(f"docker_healthcheck=({' '.join(shlex.quote(a) for a in f['healthcheck'] or [])})")
        print(f"docker_entrypoint=({' '.join(shlex.quote(a) for a in f['entrypoint'] or [])})")
    elif len(argv) == 3 and argv[1] == "notify":
        notify(argv[2])
    elif len(argv) == 3 and argv[1] == "syscalls":
        syscalls(argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for p in problems:
        print(f"deploy-check: FAIL: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
