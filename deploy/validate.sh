#!/usr/bin/env bash
# Validates the deployment files: Prometheus config and alert rules (with their unit tests),
# the Grafana dashboard, docker-compose.yml, the Kubernetes manifests, the Dockerfile and
# the scripts. .ci/run calls it; run it alone with
#   bash deploy/validate.sh
# Needs promtool (Debian: prometheus), shellcheck (Debian: shellcheck) and python3 with venv;
# the Python validators are installed from deploy/validate-requirements.txt into a venv in
# $CLOSELOOP_VALIDATE_VENV (default ~/.cache/closeloop/validate-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n--> %s\n' "$*"; }
skipped() { printf '  SKIPPED: %s\n' "$*"; }
fail() { printf 'deploy/validate.sh: %s\n' "$*" >&2; exit 1; }

command -v promtool >/dev/null 2>&1 \
  || fail "promtool not found: install Debian's 'prometheus' package (apt-get install prometheus)"
command -v shellcheck >/dev/null 2>&1 \
  || fail "shellcheck not found: install Debian's 'shellcheck' package (apt-get install shellcheck)"

venv=${CLOSELOOP_VALIDATE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/closeloop/validate-venv}
requirements=deploy/validate-requirements.txt
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$venv/closeloop-requirements.txt"; then
  step "installing the validators into $venv"
  python3 -m venv "$venv" || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" \
    || fail "pip could not install $requirements"
  cp "$requirements" "$venv/closeloop-requirements.txt"
fi
py="$venv/bin/python"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step "validators"
promtool --version 2>&1 | head -n 1
"$venv/bin/kubernetes-validate" --version | sed 's/^/kubernetes-validate /'
"$venv/bin/check-jsonschema" --version
"$venv/bin/yamllint" --version
echo "dockerfile $("$venv/bin/pip" show dockerfile 2>/dev/null | sed -n 's/^Version: //p')"
shellcheck --version | sed -n 's/^version: /shellcheck /p'

step "YAML well-formed (yamllint)"
"$venv/bin/yamllint" --strict -c deploy/yamllint.yml docker-compose.yml deploy/
echo "  SUCCESS: docker-compose.yml and deploy/**/*.yml"

step "Prometheus config (promtool check config)"
promtool check config deploy/prometheus/prometheus.yml

step "alert rules (promtool check rules)"
promtool check rules deploy/prometheus/alerts.yml

step "alert rule unit tests (promtool test rules)"
promtool test rules deploy/prometheus/alerts_test.yml

step "metrics in alerts and dashboard are exported by the services"
"$py" deploy/check_deploy.py metrics

step "Grafana dashboard: panels, datasources, targets; every query parses (promtool)"
"$py" deploy/check_deploy.py dashboard "$tmp/dashboard-queries.yml"
promtool check rules "$tmp/dashboard-queries.yml"

step "docker-compose.yml against the compose specification (check-jsonschema)"
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
"$py" deploy/check_deploy.py compose

step "docker compose config"
if docker compose version >/dev/null 2>&1; then
  docker compose config -q && echo "  SUCCESS: docker compose config"
  docker compose --profile demo config -q && echo "  SUCCESS: docker compose --profile demo config"
else
  skipped "the docker compose plugin is not installed here (the schema check above still ran)"
fi

step "Kubernetes manifests (kubernetes-validate --strict, oldest and newest bundled schema)"
mapfile -t manifests < <(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml | sort)
for version in 1.28.0 1.37.0; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${manifests[@]}"
  echo "  SUCCESS: ${#manifests[@]} files against Kubernetes $version"
done
"$py" deploy/check_deploy.py k8s
if command -v kubectl >/dev/null 2>&1 && kubectl kustomize deploy/k8s >"$tmp/kustomized.yaml" 2>"$tmp/kustomize.err"; then
  "$venv/bin/kubernetes-validate" --strict --quiet "$tmp/kustomized.yaml"
  echo "  SUCCESS: kubectl kustomize deploy/k8s renders $(grep -c '^kind:' "$tmp/kustomized.yaml") valid objects"
elif command -v kubectl >/dev/null 2>&1; then
  cat "$tmp/kustomize.err" >&2
  fail "kubectl kustomize deploy/k8s failed"
else
  skipped "kubectl is not installed: kustomization.yaml checked by check_deploy.py only"
fi

step "Dockerfile (BuildKit's parser)"
"$py" deploy/check_deploy.py dockerfile

step "Kafka topics"
"$py" deploy/check_deploy.py topics

step "scripts (shellcheck; Python syntax)"
shellcheck deploy/validate.sh deploy/kafka/create-topics.sh deploy/kafka/cluster.sh deploy/postgres/local-postgres.sh
"$py" -c 'import ast, sys; [ast.parse(open(f, encoding="utf-8").read(), f) for f in sys.argv[1:]]' \
  deploy/check_deploy.py deploy/demo/load.py deploy/demo/webhook_sink.py
echo "  SUCCESS: shell and Python scripts"

printf '\ndeploy/validate.sh: all deployment files valid\n'
