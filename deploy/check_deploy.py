"""Consistency checks of the deployment files that no schema can see: what the dashboard
and the alerts query, which ports and names the files agree on. deploy/validate.sh runs it
(it needs PyYAML, which the validation venv has):

    check_deploy.py metrics               metrics in alerts and dashboard are ones the services export
    check_deploy.py metrics --list        print them (for the metric-coverage test)
    check_deploy.py dashboard OUT.yml     panel checks; writes the panels' queries as recording
                                          rules to OUT.yml so `promtool check rules` parses them
    check_deploy.py compose               docker-compose.yml ↔ deploy/ files, ports, health checks
    check_deploy.py k8s                   deploy/k8s: probes, ports, selectors, references
    check_deploy.py topics                deploy/kafka/create-topics.sh ↔ crates/events topics
    check_deploy.py dockerfile            deploy/Dockerfile parses (BuildKit's parser), stages,
                                          cached dependency layer, non-root runtime

Each prints what it checked, or every problem it found and exits 1.
"""

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "closeloop.json"
COMPOSE = ROOT / "docker-compose.yml"
K8S = DEPLOY / "k8s"
SERVICES = {"ingest": 8080, "categorise": 8081, "trends": 8082, "notify": 8083}

# What the services export (issue 6 / DESIGN.md "Observability"); histograms by base name.
COUNTERS_AND_GAUGES = {
    "closeloop_http_requests_total",
    "closeloop_events_consumed_total",
    "closeloop_events_produced_total",
    "closeloop_events_failed_total",
    "closeloop_events_dead_lettered_total",
    "closeloop_event_retries_total",
    "closeloop_consumer_lag",
    "closeloop_feedback_accepted_total",
    "closeloop_feedback_rejected_total",
    "closeloop_feedback_categorised_total",
    "closeloop_feedback_unmatched_total",
    "closeloop_theme_mentions_total",
    "closeloop_actions_open",
    "closeloop_actions_total",
    "closeloop_action_opened_timestamp_seconds",
    "closeloop_trends_emerging_topics",
    "closeloop_theme_nps_impact",
    "closeloop_theme_rating_impact",
    "closeloop_trends_effect_verdicts_total",
    "closeloop_notifications_total",
    "closeloop_notifications_skipped_total",
    "closeloop_notifications_held_total",
    "closeloop_notifications_combined_total",
    "closeloop_notify_preference_updates_total",
    "closeloop_notify_unsubscribe_requests_total",
    "closeloop_ops_alerts_total",
}
HISTOGRAMS = {
    "closeloop_http_request_duration_seconds",
    "closeloop_event_processing_seconds",
    "closeloop_pipeline_latency_seconds",
    "closeloop_notification_delivery_seconds",
}
# Series Prometheus makes itself.
PROMETHEUS_SERIES = {"up"}

# Grafana's macros and the dashboard's variables, replaced for syntax checking.
GRAFANA_SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "${service}": ".*",
    "$service": ".*",
}

problems = []


def problem(message):
    problems.append(message)


def finish(summary):
    if problems:
        for message in problems:
            print(f"  FAILED: {message}")
        sys.exit(1)
    print(f"  SUCCESS: {summary}")


def load_yaml(path):
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        print(f"  FAILED: {path}: {error}")
        sys.exit(1)


def load_yaml_all(path):
    try:
        return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    except (OSError, yaml.YAMLError) as error:
        print(f"  FAILED: {path}: {error}")
        sys.exit(1)


def load_dashboard():
    try:
        return json.loads(DASHBOARD.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        print(f"  FAILED: {DASHBOARD}: {error}")
        sys.exit(1)


def alert_exprs():
    rules = load_yaml(ALERTS)
    return [
        (f"alert {rule.get('alert') or rule.get('record')}", str(rule["expr"]))
        for group in rules.get("groups", [])
        for rule in group.get("rules", [])
    ]


def panels(dashboard):
    """Every panel, rows' collapsed children included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(dashboard):
    return [
        (f"panel {panel.get('id')} {panel.get('title')!r} {target.get('refId')}", target.get("expr", ""))
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "topk", "bottomk", "by", "without", "on", "ignoring",
    "group_left", "group_right", "and", "or", "unless", "offset", "bool", "rate", "increase",
    "irate", "delta", "deriv", "absent", "absent_over_time", "histogram_quantile", "time",
    "vector", "sort_desc", "sort", "label_values", "max_over_time", "min_over_time", "round",
    "ceil", "floor", "clamp_min", "clamp_max", "le",
}


def metric_names(expr):
    """The metric names an expression selects (label names inside by (...) are skipped)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_groupings = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_strings)
    without_matchers = re.sub(r"\{[^}]*\}", "{}", without_groupings)
    without_ranges = re.sub(r"\[[^\]]*\]", "[]", without_matchers)
    without_numbers = re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:[smhdwy]|ms)?\b", " ", without_ranges)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][\w:]*", without_numbers):
        word = match.group(0)
        after = without_numbers[match.end():].lstrip()
        if word in PROMQL_WORDS or after.startswith("("):
            continue  # a function or keyword
        names.add(word)
    return names


def known(name):
    if name in COUNTERS_AND_GAUGES or name in PROMETHEUS_SERIES:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in HISTOGRAMS:
            return True
    return False


def check_metrics(list_only):
    used = {}
    for where, expr in alert_exprs() + dashboard_exprs(load_dashboard()):
        for name in metric_names(expr):
            used.setdefault(name, []).append(where)
    if list_only:
        for name in sorted(used):
            print(name)
        return
    for name, wheres in sorted(used.items()):
        if not known(name):
            problem(f"{name} (in {', '.join(wheres[:3])}) is not a metric the services export")
    exported = {n for n in used if n not in PROMETHEUS_SERIES}
    finish(f"{len(exported)} closeloop metrics used by alerts and dashboard, all exported names")


def check_dashboard(rules_out):
    dashboard = load_dashboard()
    for key in ("uid", "title", "panels", "schemaVersion"):
        if key not in dashboard:
            problem(f"dashboard has no {key}")
    variables = {v.get("name") for v in dashboard.get("templating", {}).get("list", [])}
    ids, rules = set(), []
    occupied = {}
    count = 0
    for panel in panels(dashboard):
        label = f"panel {panel.get('id')} {panel.get('title')!r}"
        if panel.get("id") in ids:
            problem(f"{label}: duplicate id")
        ids.add(panel.get("id"))
        grid = panel.get("gridPos") or {}
        if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")):
            problem(f"{label}: gridPos needs integer x, y, w, h")
            continue
        if grid["x"] + grid["w"] > 24:
            problem(f"{label}: wider than the 24-column grid")
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                if (x, y) in occupied:
                    problem(f"{label}: overlaps {occupied[(x, y)]}")
                    break
                occupied[(x, y)] = label
            else:
                continue
            break
        if panel.get("type") == "row":
            continue
        count += 1
        if not panel.get("title"):
            problem(f"{label}: no title")
        datasource = panel.get("datasource")
        if not isinstance(datasource, dict) or not datasource.get("uid"):
            problem(f"{label}: no datasource")
        targets = panel.get("targets") or []
        if not targets:
            problem(f"{label}: no targets")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs):
            problem(f"{label}: duplicate refId")
        for target in targets:
            expr = (target.get("expr") or "").strip()
            if not expr:
                problem(f"{label} {target.get('refId')}: empty expr")
                continue
            if not isinstance(target.get("datasource", datasource), dict):
                problem(f"{label} {target.get('refId')}: datasource is not an object")
            for variable in re.findall(r"\$\{?(\w+)", expr):
                if not variable.startswith("__") and variable not in variables:
                    problem(f"{label}: uses ${variable}, which is no dashboard variable")
            for macro, value in GRAFANA_SUBSTITUTIONS.items():
                expr = expr.replace(macro, value)
            if "$" in expr:
                problem(f"{label}: unknown Grafana macro in {expr!r}")
            rules.append({"record": f"dashboard:panel_{panel.get('id')}_{target.get('refId')}", "expr": expr})
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict) and variable.get("type") == "query":
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.get("query", ""))
            if not match:
                problem(f"variable {variable.get('name')}: expected label_values(<selector>, <label>)")
            else:
                rules.append({"record": f"dashboard:variable_{variable.get('name')}", "expr": match.group(1)})
    Path(rules_out).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False))
    finish(f"{count} panels with datasource and targets; {len(rules)} queries written to {rules_out} for promtool")


def port_of(addr):
    return int(str(addr).rsplit(":", 1)[1])


def check_compose():
    compose = load_yaml(COMPOSE)
    services = compose.get("services", {})
    volumes = set((compose.get("volumes") or {}).keys())
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for target, spec in (depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends)):
            if target not in services:
                problem(f"{name} depends on unknown service {target}")
                continue
            condition = (spec or {}).get("condition")
            if condition == "service_healthy" and "healthcheck" not in services[target]:
                problem(f"{name} waits for {target} to be healthy, but {target} has no healthcheck")
            if condition == "service_completed_successfully" and services[target].get("restart", "no") != "no":
                problem(f"{name} waits for one-shot {target}, which restarts")
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("."):
                if not (ROOT / source).exists():
                    problem(f"{name} mounts {source}, which does not exist")
            elif source not in volumes:
                problem(f"{name} mounts volume {source}, which is not declared")
    for name, port in SERVICES.items():
        service = services.get(name)
        if service is None:
            problem(f"no {name} service")
            continue
        if service.get("command") != [name]:
            problem(f"{name}: command should be [{name!r}], is {service.get('command')}")
        env = service.get("environment", {})
        addr = env.get(f"{name.upper()}_HTTP_ADDR")
        if addr is None or port_of(addr) != port:
            problem(f"{name}: {name.upper()}_HTTP_ADDR should listen on {port}, is {addr}")
        test = " ".join(service.get("healthcheck", {}).get("test", []))
        if f"localhost:{port}/readyz" not in test:
            problem(f"{name}: healthcheck should probe localhost:{port}/readyz, is {test!r}")
    # Prometheus scrapes what compose runs.
    scraped = {
        target
        for job in load_yaml(PROMETHEUS).get("scrape_configs", [])
        if job.get("job_name") == "closeloop"
        for static in job.get("static_configs", [])
        for target in static.get("targets", [])
    }
    expected = {f"{name}:{port}" for name, port in SERVICES.items()}
    if scraped != expected:
        problem(f"prometheus.yml scrapes {sorted(scraped)}, compose runs {sorted(expected)}")
    # Grafana finds the dashboards where provisioning says they are.
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "closeloop.yml")
    path = provider["providers"][0]["options"]["path"]
    mounts = [str(v).split(":")[1] for v in services.get("grafana", {}).get("volumes", [])]
    if path not in mounts:
        problem(f"Grafana provisioning reads {path}, which compose does not mount")
    demo = [n for n, s in services.items() if "demo" in (s.get("profiles") or [])]
    if not demo:
        problem("no service in the demo profile")
    finish(f"{len(services)} compose services: dependencies, mounts, ports, health checks, scrape targets agree")


def check_k8s():
    kustomization = load_yaml(K8S / "kustomization.yaml")
    listed = set(kustomization.get("resources", []))
    present = {p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}
    if listed != present:
        problem(f"kustomization.yaml lists {sorted(listed)}, the directory has {sorted(present)}")
    docs = [doc for name in sorted(present) for doc in load_yaml_all(K8S / name)]
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc.get("kind"), {})[doc["metadata"]["name"]] = doc
    config = by_kind.get("ConfigMap", {})
    secrets = by_kind.get("Secret", {})
    secret_keys = {name: set((s.get("stringData") or {}) | (s.get("data") or {})) for name, s in secrets.items()}
    deployments = by_kind.get("Deployment", {})
    for name, port in SERVICES.items():
        deployment = deployments.get(name)
        if deployment is None:
            problem(f"no Deployment {name}")
            continue
        template = deployment["spec"]["template"]
        labels = template["metadata"].get("labels", {})
        if deployment["spec"]["selector"].get("matchLabels", {}).items() - labels.items():
            problem(f"Deployment {name}: selector does not match its pod labels")
        annotations = template["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/port") != str(port) \
                or annotations.get("prometheus.io/path") != "/metrics":
            problem(f"Deployment {name}: prometheus.io annotations should scrape :{port}/metrics")
        pod = template["spec"]
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problem(f"Deployment {name}: pod securityContext needs runAsNonRoot")
        for container in pod["containers"]:
            cname = f"Deployment {name} container {container['name']}"
            if container.get("args") != [name]:
                problem(f"{cname}: args should be [{name!r}]")
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            if ports.get("http") != port:
                problem(f"{cname}: needs a port named http = {port}")
            env = {e["name"]: e for e in container.get("env", [])}
            addr = env.get(f"{name.upper()}_HTTP_ADDR", {}).get("value")
            if addr is None or port_of(addr) != port:
                problem(f"{cname}: {name.upper()}_HTTP_ADDR should listen on {port}")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                got = container.get(probe, {}).get("httpGet", {})
                if got.get("path") != path or got.get("port") not in ("http", port):
                    problem(f"{cname}: {probe} should GET {path} on the http port")
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(resources.get(kind, {})):
                    problem(f"{cname}: resources.{kind} needs cpu and memory")
            security = container.get("securityContext", {})
            if security.get("allowPrivilegeEscalation") is not False:
                problem(f"{cname}: securityContext needs allowPrivilegeEscalation: false")
            for e in container.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref.get("key") not in secret_keys.get(ref.get("name"), set()):
                    problem(f"{cname}: env {e['name']} refers to missing secret key {ref.get('name')}/{ref.get('key')}")
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef")
                if ref and ref.get("name") not in config:
                    problem(f"{cname}: envFrom refers to missing ConfigMap {ref.get('name')}")
    pod_labels = [d["spec"]["template"]["metadata"].get("labels", {}) for d in deployments.values()]

    def selects(selector):
        return any(selector and not (selector.items() - labels.items()) for labels in pod_labels)

    for name, service in by_kind.get("Service", {}).items():
        if not selects(service["spec"].get("selector", {})):
            problem(f"Service {name} selects no Deployment's pods")
    pdb_selected = set()
    for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        selector = pdb["spec"].get("selector", {}).get("matchLabels", {})
        if not selects(selector):
            problem(f"PodDisruptionBudget {name} selects no Deployment's pods")
        pdb_selected |= {d for d, dep in deployments.items()
                         if not (selector.items() - dep["spec"]["template"]["metadata"].get("labels", {}).items())}
    for name in deployments:
        if name not in pdb_selected:
            problem(f"Deployment {name} has no PodDisruptionBudget")
    partitions = int(next(iter(config.values()), {}).get("data", {}).get("KAFKA_PARTITIONS", "0") or 0)
    hpas = by_kind.get("HorizontalPodAutoscaler", {})
    if "categorise" not in {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()}:
        problem("no HorizontalPodAutoscaler for categorise")
    for name, hpa in hpas.items():
        target = hpa["spec"]["scaleTargetRef"]
        if target.get("kind") != "Deployment" or target.get("name") not in deployments:
            problem(f"HorizontalPodAutoscaler {name} targets missing {target.get('kind')} {target.get('name')}")
        elif "replicas" in deployments[target["name"]]["spec"]:
            problem(f"Deployment {target['name']} sets replicas although HPA {name} owns them")
        if partitions and hpa["spec"]["maxReplicas"] > partitions:
            problem(f"HPA {name}: maxReplicas {hpa['spec']['maxReplicas']} > KAFKA_PARTITIONS {partitions} (idle consumers)")
    finish(f"{len(docs)} Kubernetes objects: probes, ports, scrape annotations, selectors, references agree")


def check_topics():
    source = (ROOT / "crates" / "events" / "src" / "lib.rs").read_text(encoding="utf-8")
    module = re.search(r"pub mod topics \{(.*?)\n\}", source, re.S)
    if not module:
        print("  FAILED: crates/events/src/lib.rs has no `pub mod topics`")
        sys.exit(1)
    constants = dict(re.findall(r'pub const (\w+): &str = "([^"]+)";', module.group(1)))
    all_block = re.search(r"pub const ALL: &\[&str\] = &\[(.*?)\];", module.group(1), re.S)
    expected = {constants[name] for name in re.findall(r"\w+", all_block.group(1))} if all_block else set()
    script = (DEPLOY / "kafka" / "create-topics.sh").read_text(encoding="utf-8")
    listed = re.search(r"^topics=\((.*?)^\)", script, re.S | re.M)
    created = set(listed.group(1).split()) if listed else set()
    if not expected:
        problem("no topics found in crates/events (topics::ALL)")
    if created != expected:
        problem(f"create-topics.sh creates {sorted(created)}, crates/events has {sorted(expected)}")
    finish(f"create-topics.sh creates the {len(expected)} topics of crates/events and their dead-letter topics")


def check_dockerfile():
    import dockerfile  # the validation venv's `dockerfile` package: BuildKit's Go parser

    path = DEPLOY / "Dockerfile"
    try:
        commands = dockerfile.parse_file(str(path))
    except dockerfile.GoParseError as error:
        print(f"  FAILED: {path}: {error}")
        sys.exit(1)
    stages = []  # (name, [commands])
    for command in commands:
        if command.cmd == "FROM":
            value = list(command.value)
            name = value[2] if len(value) == 3 and value[1].upper() == "AS" else str(len(stages))
            stages.append((name, []))
        elif stages:
            stages[-1][1].append(command)
    names = [name for name, _ in stages]
    for index, (name, body) in enumerate(stages):
        for command in body:
            for flag in command.flags:
                if flag.startswith("--from=") and flag.removeprefix("--from=") not in names[:index]:
                    problem(f"stage {name}: {flag} names no earlier stage")
    build = dict(stages).get("build", [])
    runs = [" ".join(c.value) for c in build if c.cmd == "RUN"]
    copies_all = [i for i, c in enumerate(build) if c.cmd == "COPY" and list(c.value) == [".", "."]]
    cook = [i for i, c in enumerate(build) if c.cmd == "RUN" and "cargo chef cook" in " ".join(c.value)]
    if not cook or not copies_all or cook[0] > copies_all[0]:
        problem("build stage: dependencies (cargo chef cook) must be built before the sources are copied")
    if not any("cargo build --release --locked" in run for run in runs):
        problem("build stage: no `cargo build --release --locked`")
    final_name, final = stages[-1]
    users = [c.value[0] for c in final if c.cmd == "USER"]
    uid = users[-1].split(":")[0] if users else "0"
    if not uid.isdigit() or int(uid) == 0:
        problem(f"final stage {final_name}: USER must be a numeric non-root uid (Kubernetes runAsNonRoot), is {uid!r}")
    entry = [list(c.value) for c in final if c.cmd == "ENTRYPOINT"]
    if not entry or entry[-1] != ["/usr/local/bin/closeloop"]:
        problem(f"final stage: ENTRYPOINT should be the closeloop binary, is {entry}")
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    if "**/target" not in ignore:
        problem("Dockerfile.dockerignore must exclude **/target")
    compose = load_yaml(COMPOSE)
    dockerfiles = {s.get("build", {}).get("dockerfile") for s in compose["services"].values() if "build" in s}
    if dockerfiles != {"deploy/Dockerfile"}:
        problem(f"compose builds from {dockerfiles}, expected deploy/Dockerfile")
    finish(f"Dockerfile: {len(stages)} stages ({', '.join(names)}), cached dependency layer, runs as uid {uid}")


def main(argv):
    if not argv:
        print(__doc__)
        sys.exit(2)
    command, args = argv[0], argv[1:]
    if command == "metrics":
        check_metrics(list_only=args == ["--list"])
    elif command == "dashboard" and len(args) == 1:
        check_dashboard(args[0])
    elif command == "compose":
        check_compose()
    elif command == "k8s":
        check_k8s()
    elif command == "topics":
        check_topics()
    elif command == "dockerfile":
        check_dockerfile()
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
