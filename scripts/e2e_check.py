#!/usr/bin/env python3
"""Checks what scripts/e2e_beauty.sh read back from the embedding topics (issue 6, end to end).

Inputs in --work: kcat-{user,item}.jsonl (kcat -J envelopes, one per record, in offset order per
partition) and py-{user,item}.tsv (tests/pipeline/read_embeddings.py: key, kind, model_version,
dim, format, norm). Checks, for each topic:
  - every record decodes in kcat's reading too (JSON value: id = key, dim = len(embedding);
    binary value: 4 * gsau.dim bytes of finite float32, gsau.id = key), nonzero norm;
  - both formats are present (JSON before the restart, binary after; the topics are compacted, so
    a key republished after the restart may keep only binary records);
  - model_version strictly increases per key, in offset order, and every binary record's version
    is above --restart-version, the first run's last (the restart kept counting up);
  - kcat and confluent-kafka read the same records (count and latest version per key);
  - users: every user who clicked (every user of --data) has a record; items: every key is an
    item of --data.
Writes --out/summary.md and summary.json; exits 1 when a check fails."""
import argparse
import json
import math
import struct
import sys
from collections import defaultdict


def dataset_ids(path):
    users, items = set(), set()
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            users.add(parts[0])
            items.update(parts[1:])
    return users, items


def decode_kcat(env, kind):
    """(key, partition, offset, format, version) of one kcat -J envelope; raises on a bad record."""
    key = env["key"]
    hdr = env.get("headers") or []
    headers = dict(zip(hdr[0::2], hdr[1::2]))
    payload = env["payload"]
    if headers.get("gsau.format") == "f32le":
        dim = int(headers["gsau.dim"])
        # kcat writes the value's bytes as a JSON string: escaped below 0x20, raw above; read as
        # latin-1 each character is one byte again.
        raw = payload.encode("latin-1")
        if len(raw) != 4 * dim:
            raise ValueError(f"{key}: binary value of {len(raw)} bytes for dim {dim}")
        vec = struct.unpack(f"<{dim}f", raw)
        if headers.get("gsau.id") != key or headers.get("gsau.kind") != kind:
            raise ValueError(f"{key}: headers {headers} do not match")
        fmt, version = "binary", int(headers["gsau.model_version"])
    else:
        rec = json.loads(payload)
        vec = rec["embedding"]
        if rec["id"] != key or rec["kind"] != kind or rec["dim"] != len(vec):
            raise ValueError(f"{key}: JSON record does not match its key, kind or dim")
        fmt, version = "json", int(rec["model_version"])
    if not all(math.isfinite(x) for x in vec) or math.sqrt(sum(x * x for x in vec)) == 0:
        raise ValueError(f"{key}: embedding not finite or zero")
    return key, env["partition"], env["offset"], fmt, version


def check_topic(kind, work, expected_keys, must_cover, restart_version):
    res = {"topic": f"gsau.{kind}-embeddings"}
    failures = []
    records, bad = [], []
    with open(f"{work}/kcat-{kind}.jsonl", encoding="latin-1") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                records.append(decode_kcat(json.loads(line), kind))
            except (ValueError, KeyError, struct.error) as e:
                bad.append(str(e))
    res["kcat_records"] = len(records)
    res["kcat_undecodable"] = len(bad)
    if bad:
        failures.append(f"kcat: {len(bad)} records do not decode, first: {bad[0]}")
    py = []
    with open(f"{work}/py-{kind}.tsv") as f:
        for line in f:
            key, k, version, dim, fmt, norm = line.split("\t")
            py.append((key, k, int(version), int(dim), fmt, float(norm)))
    res["confluent_kafka_records"] = len(py)
    if any(k != kind or norm <= 0 for _, k, _, _, _, norm in py):
        failures.append("confluent-kafka: a record of another kind or with a zero embedding")

    by_format = defaultdict(list)
    for _, _, _, fmt, version in records:
        by_format[fmt].append(version)
    res["records_by_format"] = {k: len(v) for k, v in by_format.items()}
    # Compaction may remove every JSON record of a key republished after the restart (items are,
    # all of them): formats are checked over both topics in main(); versions against the first
    # run's last one.
    if not by_format["binary"]:
        failures.append("no binary records (written after the restart)")
    elif restart_version and min(by_format["binary"]) <= restart_version:
        failures.append(f"model_version did not keep increasing across the restart: the first run ended at "
                        f"{restart_version}, a binary record has {min(by_format['binary'])}")
    if by_format["json"] and restart_version and max(by_format["json"]) > restart_version:
        failures.append(f"a JSON record with model_version {max(by_format['json'])} above the first run's last")
    res["model_version_json"] = [min(by_format["json"], default=0), max(by_format["json"], default=0)]
    res["model_version_binary"] = [min(by_format["binary"], default=0), max(by_format["binary"], default=0)]

    last = {}
    not_increasing = 0
    for key, part, offset, _, version in sorted(records, key=lambda r: (r[1], r[2])):
        if key in last and version <= last[key]:
            not_increasing += 1
        last[key] = version
    res["versions_not_increasing"] = not_increasing
    if not_increasing:
        failures.append(f"{not_increasing} records whose model_version is not above their key's previous one")

    py_latest = {}
    for key, _, version, _, _, _ in py:
        py_latest[key] = max(py_latest.get(key, 0), version)
    if len(py) != len(records) or py_latest != last:
        failures.append(f"kcat ({len(records)} records, {len(last)} keys) and confluent-kafka "
                        f"({len(py)}, {len(py_latest)}) disagree")
    res["keys"] = len(last)
    unknown = set(last) - expected_keys
    res["keys_not_in_data"] = len(unknown)
    if unknown:
        failures.append(f"{len(unknown)} keys that the data never clicked, e.g. {sorted(unknown)[:3]}")
    if must_cover:
        missing = expected_keys - set(last)
        res["clicked_without_record"] = len(missing)
        if missing:
            failures.append(f"{len(missing)} of {len(expected_keys)} users who clicked have no record, "
                            f"e.g. {sorted(missing)[:3]}")
    res["failures"] = failures
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--note", default="")
    ap.add_argument("--restart-version", type=int, default=0,
                    help="the last model_version of the run before the restart (from its log)")
    a = ap.parse_args()
    users, items = dataset_ids(a.data)
    restart_version = a.restart_version
    results = [check_topic("user", a.work, users, True, restart_version),
               check_topic("item", a.work, items, False, restart_version)]
    if not any(r["records_by_format"].get("json") for r in results):
        results[0]["failures"].append("no JSON records left in either topic (written before the restart)")
    ok = not any(r["failures"] for r in results)
    summary = {"passed": ok, "note": a.note, "users_in_data": len(users), "items_in_data": len(items),
               "topics": results}
    with open(f"{a.out}/summary.json", "w") as f:
        json.dump(summary, f, indent=2)
    lines = ["# End to end on Amazon Beauty (issue 6)", "", a.note, "",
             f"First run's last model_version: {restart_version}.", "",
             "| topic | records (kcat) | records (confluent-kafka) | keys | JSON / binary | model_version JSON | "
             "model_version binary | check |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        fm = r["records_by_format"]
        lines.append(f"| {r['topic']} | {r['kcat_records']} | {r['confluent_kafka_records']} | {r['keys']} | "
                     f"{fm.get('json', 0)} / {fm.get('binary', 0)} | {r['model_version_json'][0]}-"
                     f"{r['model_version_json'][1]} | {r['model_version_binary'][0]}-{r['model_version_binary'][1]} | "
                     f"{'PASS' if not r['failures'] else 'FAIL'} |")
    lines += ["", f"Users in the data: {len(users)}; users with a record: {results[0]['keys']}; "
              f"without: {results[0].get('clicked_without_record', 0)}.", ""]
    for r in results:
        for msg in r["failures"]:
            lines.append(f"- FAIL {r['topic']}: {msg}")
    lines.append(f"\nResult: {'PASS' if ok else 'FAIL'}")
    with open(f"{a.out}/summary.md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
