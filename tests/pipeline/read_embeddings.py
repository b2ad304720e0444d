#!/usr/bin/env python3
"""Reads an embedding topic with Python's confluent-kafka, as a downstream service would, and
decodes every record in either format (JSON value, or float32 LE value + gsau.* headers).

Usage: read_embeddings.py BOOTSTRAP TOPIC
Prints one line per record: key<TAB>kind<TAB>model_version<TAB>dim<TAB>format<TAB>norm, and
exits 1 on a record it cannot decode (a torn or malformed one)."""
import json
import math
import struct
import sys

from confluent_kafka import Consumer, KafkaError, TopicPartition


def decode(msg):
    headers = {k: (v.decode() if v is not None else None) for k, v in (msg.headers() or [])}
    value = msg.value()
    if headers.get("gsau.format") == "f32le":
        dim = int(headers["gsau.dim"])
        if value is None:
            return headers["gsau.kind"], int(headers["gsau.model_version"]), dim, "tombstone", 0.0
        if len(value) != 4 * dim:
            raise ValueError(f"binary value of {len(value)} bytes for dim {dim}")
        vec = struct.unpack(f"<{dim}f", value)
        if headers["gsau.id"] != msg.key().decode():
            raise ValueError("gsau.id header differs from the key")
        return headers["gsau.kind"], int(headers["gsau.model_version"]), dim, "binary", math.sqrt(sum(x * x for x in vec))
    if value is None:
        return "?", 0, 0, "tombstone", 0.0
    rec = json.loads(value)
    vec = rec["embedding"]
    if len(vec) != rec["dim"] or rec["id"] != msg.key().decode():
        raise ValueError("JSON record does not match its dim or key")
    return rec["kind"], int(rec["model_version"]), rec["dim"], "json", math.sqrt(sum(x * x for x in vec))


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "read-embeddings", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "enable.partition.eof": True})
    meta = c.list_topics(topic, timeout=30)
    parts = list(meta.topics[topic].partitions)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    done = set()
    while len(done) < len(parts):
        msg = c.poll(10)
        if msg is None:
            break
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                done.add(msg.partition())
                continue
            raise RuntimeError(msg.error())
        kind, version, dim, fmt, norm = decode(msg)
        print(f"{msg.key().decode()}\t{kind}\t{version}\t{dim}\t{fmt}\t{norm:.6g}")
    c.close()


if __name__ == "__main__":
    main()
