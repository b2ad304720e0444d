#!/usr/bin/env bash
# Resolves the Apache Kafka broker jars (with their dependencies) through Maven into
# $GSAU_CACHE/kafka-<version>/libs. Idempotent: exits at once when the jars are there.
# Prints nothing but progress; the classpath directory is found by scripts/kafka_broker.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=${GSAU_KAFKA_VERSION:-4.1.1}
cache=${GSAU_CACHE:-$HOME/.cache/gsau-stream}
dest="$cache/kafka-$version/libs"
if [ -f "$dest/.complete" ]; then
  echo "kafka_fetch.sh: Kafka $version present in $dest"
  exit 0
fi
command -v mvn >/dev/null || { echo "kafka_fetch.sh: mvn not found (run scripts/setup.sh)" >&2; exit 1; }
echo "kafka_fetch.sh: resolving Apache Kafka $version through Maven into $dest"
rm -rf "$dest"; mkdir -p "$dest"
# -C: a download whose checksum does not match fails (Maven only warns by default, and -q hides it).
mvn -B -q -C -f "$here/kafka/pom.xml" -Dkafka.version="$version" \
  dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dest"
ls "$dest"/kafka_2.13-"$version".jar >/dev/null
touch "$dest/.complete"
echo "kafka_fetch.sh: $(ls "$dest"/*.jar | wc -l) jars in $dest"
