#!/usr/bin/env bash
# Installs everything gsau-stream needs to build, test and run. Idempotent: a second run
# checks, finds everything present and returns in a second or two.
#
#   scripts/setup.sh            Debian packages + the Kafka broker (Maven, into the cache)
#   scripts/setup.sh --no-kafka Debian packages only
#
# The Kafka broker jars are resolved by Maven into $GSAU_CACHE (default ~/.cache/gsau-stream),
# never into the repository.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
want_kafka=1
for a in "$@"; do
  case "$a" in
    --no-kafka) want_kafka=0 ;;
    -h|--help) sed -n 2,9p "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$a'" >&2; exit 2 ;;
  esac
done

# Every Debian package the project uses, by role (see docs: ../shared/docs/DEPENDENCIES.md).
packages=(
  build-essential cmake ninja-build pkg-config git curl ca-certificates
  librdkafka-dev kcat                               # Kafka client, independent CLI client
  librocksdb-dev                                    # state store
  libtorch-dev libopenblas0-openmp                  # learner (+ a fast BLAS for torch)
  libjemalloc2 libtcmalloc-minimal4                 # allocators of the training executables (CMakeLists.txt)
  prometheus-cpp-dev prometheus                     # metrics library, metrics server for tests
  prometheus-alertmanager                           # amtool: checks deploy/alertmanager.yml
  libgtest-dev libgmock-dev libbenchmark-dev        # tests and benchmarks
  libsimdjson-dev nlohmann-json3-dev                # JSON decode / encode
  libyaml-cpp-dev libcli11-dev libspdlog-dev libfmt-dev
  zlib1g-dev libzstd-dev liblz4-dev libsnappy-dev libbz2-dev libgflags-dev
  openjdk-17-jdk-headless maven                     # the real Kafka broker for tests
  clang libclang-rt-14-dev                          # libFuzzer and sanitizer runtimes
  python3 python3-matplotlib                        # plots of training curves
  python3-venv                                      # the pipeline test reads embeddings with confluent-kafka
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup.sh: installing ${#missing[@]} Debian packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup.sh: Debian packages present"
fi

# libtorch-dev pulls in OpenBLAS's pthread build too, and Debian's alternatives prefer it
# (priority 100 against 95), so torch would load the pthread build although the OpenMP one is
# installed for it. The OpenMP build shares torch's OpenMP threads instead of starting a pool of
# its own that fights them (learner/src/blas_threads.h has the measurements): select it.
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
for lib in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
  name="$lib-$multiarch"
  want="/usr/lib/$multiarch/openblas-openmp/$lib"
  [[ -e "$want" ]] || continue
  if [[ "$(update-alternatives --query "$name" 2>/dev/null | sed -n 's/^Value: //p')" != "$want" ]]; then
    sudo_cmd=()
    [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
    echo "setup.sh: $name -> $want"
    # Not fatal: with the pthread build the learner holds OpenBLAS to one thread, ~10% slower.
    "${sudo_cmd[@]}" update-alternatives --quiet --set "$name" "$want" ||
      echo "setup.sh: could not select $want; OpenBLAS's pthread build stays (slower learner)" >&2
  fi
done

if ((want_kafka)); then
  "$here/kafka_fetch.sh"
fi
