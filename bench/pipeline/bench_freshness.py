#!/usr/bin/env python3
"""Freshness of user embeddings, measured as a downstream service sees it (see
scripts/bench_freshness.sh). Usage: bench_freshness.py BOOTSTRAP RATE SECONDS"""
import json
import random
import struct
import sys
import threading
import time

from confluent_kafka import KafkaException, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


DRAIN_S = 30  # longest wait for the last clicks' records


def now_ms():
    return time.time_ns() // 1_000_000


def main():
    bootstrap, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    users, items = 20000, 3000
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic("clicks", 4, 1)]).values():
        try:
            f.result()
        except Exception:
            pass  # exists
    # Wait for gsau run to create the embedding topic, then read it from its end.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-freshness", "enable.auto.commit": False,
                         "fetch.wait.max.ms": 5, "auto.offset.reset": "latest"})
    deadline = time.time() + 120
    while True:
        md = consumer.list_topics(timeout=10)
        if "gsau.user-embeddings" in md.topics and md.topics["gsau.user-embeddings"].partitions:
            break
        if time.time() > deadline:
            sys.exit("gsau.user-embeddings never appeared: is gsau run up?")
        time.sleep(0.5)
    parts = list(md.topics["gsau.user-embeddings"].partitions)
    assigned = []
    for p in parts:
        while True:  # a topic just created may have no leader yet
            try:
                lo, hi = consumer.get_watermark_offsets(TopicPartition("gsau.user-embeddings", p), timeout=10)
                break
            except KafkaException:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        assigned.append(TopicPartition("gsau.user-embeddings", p, hi))
    consumer.assign(assigned)

    pending = {}  # user -> list of produce times (ms) not yet covered by a record
    lock = threading.Lock()
    latencies = []
    stop = threading.Event()

    def consume():
        while not stop.is_set():
            msg = consumer.poll(0.05)
            if msg is None or msg.error():
                continue
            t = now_ms()
            headers = dict(msg.headers() or [])
            if "gsau.event_time_ms" in headers:
                ev = int(headers["gsau.event_time_ms"])
            else:
                ev = json.loads(msg.value())["event_time_ms"]
            user = msg.key().decode()
            with lock:
                ts = pending.get(user)
                if not ts:
                    continue
                keep = []
                for p in ts:
                    if p <= ev:
                        latencies.append(t - p)
                    else:
                        keep.append(p)
                pending[user] = keep

    th = threading.Thread(target=consume)
    th.start()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1, "enable.idempotence": True})
    rng = random.Random(2020)
    # Warm-up: let every partition be assigned and the first steps happen.
    for _ in range(2000):
        u, i = rng.randrange(users), rng.randrange(items)
        producer.produce("clicks", key=f"u{u}", value=json.dumps({"user_id": f"u{u}", "item_id": f"i{i}", "ts": now_ms()}))
    producer.flush(30)
    time.sleep(5)
    with lock:
        pending.clear()
        latencies.clear()
    start = time.time()
    sent = 0
    last_print = start
    while True:
        elapsed = time.time() - start
        if elapsed >= seconds:
            break
        due = int(elapsed * rate)
        while sent < due:
            u = int(rng.paretovariate(1.2)) % users
            i = int(rng.paretovariate(1.1)) % items
            t = now_ms()
            with lock:
                pending.setdefault(f"u{u}", []).append(t)
            producer.produce("clicks", key=f"u{u}", value=json.dumps({"user_id": f"u{u}", "item_id": f"i{i}", "ts": t}))
            sent += 1
        producer.poll(0)
        if time.time() - last_print >= 10:
            with lock:
                n = len(latencies)
                cur = sorted(latencies[-2000:])
            p50 = cur[len(cur) // 2] if cur else float("nan")
            print(f"  {elapsed:5.0f}/{seconds:.0f} s: {sent} clicks ({sent / max(elapsed, 1e-9):.0f}/s), "
                  f"{n} matched, recent p50 {p50} ms, ETA {seconds - elapsed:.0f} s", flush=True)
            last_print = time.time()
        time.sleep(0.001)
    # The load offered: clicks handed to the producer per second of the sending window (the
    # flush after it is delivery, not load).
    achieved = sent / (time.time() - start)
    producer.flush(30)
    # The last clicks' records: every click makes its user due, so each should be matched. Wait
    # for them up to DRAIN_S; a click still unmatched then counts as slower than any measured
    # (left out, it would have made the percentiles look better than what readers saw).
    drain_until = time.time() + DRAIN_S
    while time.time() < drain_until:
        with lock:
            if not any(pending.values()):
                break
        time.sleep(0.1)
    stop.set()
    th.join()
    consumer.close()
    with lock:
        lat = sorted(latencies)
        missing = sum(len(v) for v in pending.values())
    if not lat:
        sys.exit("no user record matched a click: see gsau run's log")
    total = len(lat) + missing

    def p(q):
        k = min(total - 1, int(q * total))
        return lat[k] if k < len(lat) else "inf"

    print(f"{len(lat)} of {total} clicks matched to their user's record ({missing} unmatched {DRAIN_S} s after "
          f"the last, counted as slower than any); latency ms: p50 {p(0.5)} p90 {p(0.9)} p99 {p(0.99)} "
          f"max {'inf' if missing else lat[-1]}")
    print(f"BENCH freshness p50_ms={p(0.5)} p99_ms={p(0.99)} events_per_s={achieved:.0f} unmatched={missing}")


if __name__ == "__main__":
    main()
