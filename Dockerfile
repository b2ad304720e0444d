# The gsau pipeline image: Debian 12 with the project's packages, built with scripts/setup.sh.
FROM debian:12 AS build
WORKDIR /src
COPY scripts/setup.sh scripts/kafka_fetch.sh scripts/
COPY scripts/kafka scripts/kafka
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends sudo && scripts/setup.sh --no-kafka
COPY . .
# GSAU_REQUIRE_LEARNER: a LibTorch that is not found fails the build (as in the Makefile) rather
# than giving an image whose `gsau run` is not available.
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGSAU_BUILD_TESTS=OFF -DGSAU_BUILD_BENCH=OFF \
      -DGSAU_REQUIRE_LEARNER=ON \
 && cmake --build build -j"$(nproc)"

FROM debian:12
# The package of every library the binary names (tests/ops checks the list against it). RocksDB
# is linked in statically: its compression libraries are listed, not librocksdb7.8.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      librdkafka1 librdkafka++1 libtorch1.13 libopenblas0-openmp libjemalloc2 \
      libprometheus-cpp-core1.0 libsimdjson14 libyaml-cpp0.7 libspdlog1.10 libfmt9 \
      libsnappy1v5 liblz4-1 libzstd1 libbz2-1.0 zlib1g ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/gsau /usr/local/bin/gsau
EXPOSE 9464
ENTRYPOINT ["gsau"]
CMD ["run", "--config", "/etc/gsau/gsau.yaml"]
