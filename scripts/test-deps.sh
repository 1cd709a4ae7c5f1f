#!/usr/bin/env bash
# Debian packages the test suite needs, installed only when missing (needs root):
#   promtool, amtool      the Prometheus rule and Alertmanager config tests
#   PostgreSQL            the archive tests start a private server (initdb, pg_ctl)
#   chromium, a CJK font  the report is opened in a real headless browser, Chinese labels drawn
#   redis-server          Redis over TLS with ACL users (tests/test_transport_redis.py; the
#                         valkey wheel's server is built without TLS)
#   a Java runtime, Maven the test broker is Apache Kafka (COMPLAINTS_TEST_BROKER=kafka): Maven
#                         fetches its jars from Maven Central once (tools/kafka_broker)
set -euo pipefail
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
fc-list 2>/dev/null | grep -q "Noto Sans CJK" || missing+=(fonts-noto-cjk)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v java >/dev/null || [[ -x "${JAVA_HOME:-/nonexistent}/bin/java" ]] || missing+=(default-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
