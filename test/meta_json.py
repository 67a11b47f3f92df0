#!/usr/bin/env python3
"""Check META.json against the PGXN Meta Spec 1.0.0 and against the project.

    python3 test/meta_json.py [META.json] [--control hubspot_events.control]

Without arguments it checks the repository's META.json and
hubspot_events.control.  Each check prints "ok" or "FAILED" with the reason;
the last line is "meta_json: N passed, N failed", and the exit status is 1
when a check failed (2 when the files cannot be read at all).

What is checked (the spec: https://pgxn.org/spec/, its JSON schemas in
pgxn/meta, schema/v1):
  * the required keys (name, version, abstract, maintainer, license,
    provides, meta-spec) and no other top-level key than the spec's and
    custom x_ keys;
  * each key's type and form: name a term, version a semantic version,
    maintainer a string or list of strings, license a known shortcut, a list
    of them or a name -> URI object, meta-spec.version 1.0.0, provides one
    object per extension with file and version, prereqs phases ->
    relationships -> term -> version range, release_status, tags, no_index,
    resources;
  * against the project: version equals default_version in the control
    file, every provides version equals it too, the files named exist, and
    PostgreSQL is a runtime requirement.

Python 3 standard library only.
"""

import argparse
import json
import os
import re
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# https://semver.org's suggested expression, as the spec's version.schema.json
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$")
# a version range: [op] version, AND-ed with commas; or 0 (any version)
RANGE_PART = re.compile(r"^(?:(?:[=!]=|[<>]=?)\s*)?(.*)$")

TOP_KEYS = {"name", "version", "abstract", "maintainer", "license", "provides",
            "meta-spec", "description", "generated_by", "tags", "no_index",
            "prereqs", "release_status", "resources"}
REQUIRED = ["name", "version", "abstract", "maintainer", "license", "provides", "meta-spec"]
LICENSES = {"agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd",
            "freebsd", "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1",
            "lgpl_3_0", "mit", "mozilla_1_0", "mozilla_1_1", "openssl", "perl_5",
            "postgresql", "qpl_1_0", "ssleay", "sun", "zlib", "open_source",
            "restricted", "unrestricted", "unknown"}
PHASES = {"configure", "build", "test", "runtime", "develop"}
RELATIONSHIPS = {"requires", "recommends", "suggests", "conflicts"}
RELEASE_STATUS = {"stable", "testing", "unstable"}
META_SPEC_URLS = {"https://pgxn.org/meta/spec.txt", "http://pgxn.org/meta/spec.txt"}
PROVIDES_KEYS = {"file", "version", "abstract", "docfile"}


class Problems(Exception):
    """One check's failures."""


def custom(key):
    return isinstance(key, str) and re.match(r"^[xX]_.", key) is not None


def is_control(ch):
    return unicodedata.category(ch) == "Cc"


def check_term(value, what):
    if not isinstance(value, str):
        raise Problems(f"{what} must be a string, not {type(value).__name__}")
    if len(value) < 2:
        raise Problems(f"{what} {value!r} is shorter than 2 characters")
    bad = [c for c in value if c in "/\\" or c.isspace() or is_control(c)]
    if bad:
        raise Problems(f"{what} {value!r} contains {bad[0]!r} (no slash, backslash, space or control character)")


def check_nonempty_string(value, what):
    if not isinstance(value, str) or value == "":
        raise Problems(f"{what} must be a non-empty string")


def check_semver(value, what):
    if not isinstance(value, str):
        raise Problems(f"{what} must be a string, not {type(value).__name__}")
    if not SEMVER.match(value):
        raise Problems(f"{what} {value!r} is not a semantic version (MAJOR.MINOR.PATCH)")


def check_path(value, what, root):
    check_nonempty_string(value, what)
    if len(value) < 2 or value.startswith("/") or "\\" in value or ".." in value.split("/"):
        raise Problems(f"{what} {value!r} is not a relative unix path inside the distribution")
    if not os.path.exists(os.path.join(root, value)):
        raise Problems(f"{what} {value!r} does not exist in {root}")


def check_range(value, what):
    if value == 0 and not isinstance(value, bool):
        return
    if not isinstance(value, str):
        raise Problems(f"{what} must be a version range string or 0, not {value!r}")
    if value == "0":
        return
    for part in value.split(","):
        version = RANGE_PART.match(part.strip()).group(1).strip()
        if not SEMVER.match(version):
            raise Problems(f"{what} {value!r}: {version!r} is not a semantic version")


def read_default_version(control):
    with open(control, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^\s*default_version\s*=\s*'([^']*)'", line)
            if m:
                return m.group(1)
    raise Problems(f"{control} has no default_version")


def main():
    ap = argparse.ArgumentParser(description="Check META.json against the PGXN Meta Spec 1.0.0.")
    ap.add_argument("meta", nargs="?", default=os.path.join(ROOT, "META.json"))
    ap.add_argument("--control", default=None,
                    help="the extension's control file (default: hubspot_events.control beside META.json)")
    args = ap.parse_args()
    root = os.path.dirname(os.path.abspath(args.meta))
    control = args.control or os.path.join(root, "hubspot_events.control")

    try:
        with open(args.meta, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        print(f"FAILED: {args.meta} cannot be read as JSON: {e}")
        print("meta_json: 0 passed, 1 failed")
        return 2
    try:
        default_version = read_default_version(control)
    except (OSError, Problems) as e:
        print(f"FAILED: {e}")
        print("meta_json: 0 passed, 1 failed")
        return 2

    passed = failed = 0

    def check(what, fn):
        nonlocal passed, failed
        try:
            fn()
        except Problems as e:
            failed += 1
            print(f"FAILED: {what}: {e}")
        else:
            passed += 1
            print(f"ok: {what}")

    def is_object():
        if not isinstance(meta, dict):
            raise Problems("META.json must hold a JSON object")
    check("META.json is an object", is_object)
    if not isinstance(meta, dict):
        print(f"meta_json: {passed} passed, {failed} failed")
        return 1

    def required():
        missing = [k for k in REQUIRED if k not in meta]
        if missing:
            raise Problems("missing " + ", ".join(missing))
    check("required keys", required)

    def known_keys():
        unknown = sorted(k for k in meta if k not in TOP_KEYS and not custom(k))
        if unknown:
            raise Problems("unknown keys " + ", ".join(unknown) + " (custom keys start with x_)")
    check("no unknown top-level key", known_keys)

    check("name", lambda: check_term(meta.get("name"), "name"))
    check("abstract", lambda: check_nonempty_string(meta.get("abstract"), "abstract"))
    if "description" in meta:
        check("description", lambda: check_nonempty_string(meta["description"], "description"))
    if "generated_by" in meta:
        check("generated_by", lambda: check_nonempty_string(meta["generated_by"], "generated_by"))

    def maintainer():
        m = meta.get("maintainer")
        if isinstance(m, str):
            check_nonempty_string(m, "maintainer")
        elif isinstance(m, list) and m:
            for i, x in enumerate(m):
                check_nonempty_string(x, f"maintainer[{i}]")
        else:
            raise Problems("maintainer must be a non-empty string or a non-empty list of strings")
    check("maintainer", maintainer)

    def license_():
        lic = meta.get("license")
        if isinstance(lic, str):
            if lic not in LICENSES:
                raise Problems(f"license {lic!r} is not one of the spec's shortcuts")
        elif isinstance(lic, list) and lic:
            for x in lic:
                if x not in LICENSES:
                    raise Problems(f"license {x!r} is not one of the spec's shortcuts")
        elif isinstance(lic, dict) and lic:
            for k, v in lic.items():
                if not isinstance(v, str) or not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$", v):
                    raise Problems(f"license {k!r} must map to a URI, not {v!r}")
        else:
            raise Problems("license must be a shortcut, a list of shortcuts or an object of URIs")
    check("license", license_)

    def meta_spec():
        ms = meta.get("meta-spec")
        if not isinstance(ms, dict):
            raise Problems("meta-spec must be an object")
        if ms.get("version") != "1.0.0":
            raise Problems(f"meta-spec.version must be \"1.0.0\", not {ms.get('version')!r}")
        if "url" in ms and ms["url"] not in META_SPEC_URLS:
            raise Problems(f"meta-spec.url {ms['url']!r} is not the spec's")
        unknown = sorted(k for k in ms if k not in ("version", "url") and not custom(k))
        if unknown:
            raise Problems("meta-spec has unknown keys " + ", ".join(unknown))
    check("meta-spec", meta_spec)

    def version():
        check_semver(meta.get("version"), "version")
        if meta["version"] != default_version:
            raise Problems(f"version {meta['version']!r} differs from default_version "
                           f"{default_version!r} in {os.path.basename(control)}")
    check(f"version equals default_version ({default_version})", version)

    def provides():
        p = meta.get("provides")
        if not isinstance(p, dict) or not p:
            raise Problems("provides must be a non-empty object")
        for ext, spec in p.items():
            check_term(ext, "provides key")
            if not isinstance(spec, dict):
                raise Problems(f"provides.{ext} must be an object")
            for k in ("file", "version"):
                if k not in spec:
                    raise Problems(f"provides.{ext} has no {k}")
            check_path(spec["file"], f"provides.{ext}.file", root)
            check_semver(spec["version"], f"provides.{ext}.version")
            if spec["version"] != default_version:
                raise Problems(f"provides.{ext}.version {spec['version']!r} differs from "
                               f"default_version {default_version!r}")
            if "docfile" in spec:
                check_path(spec["docfile"], f"provides.{ext}.docfile", root)
            if "abstract" in spec:
                check_nonempty_string(spec["abstract"], f"provides.{ext}.abstract")
            unknown = sorted(k for k in spec if k not in PROVIDES_KEYS and not custom(k))
            if unknown:
                raise Problems(f"provides.{ext} has unknown keys " + ", ".join(unknown))
        if meta.get("name") not in p:
            raise Problems(f"provides does not list the extension {meta.get('name')!r}")
    check("provides", provides)

    def prereqs():
        pr = meta.get("prereqs")
        if not isinstance(pr, dict) or not pr:
            raise Problems("prereqs must be a non-empty object")
        for phase, rels in pr.items():
            if custom(phase):
                continue
            if phase not in PHASES:
                raise Problems(f"prereqs phase {phase!r} is not one of {sorted(PHASES)}")
            if not isinstance(rels, dict) or not rels:
                raise Problems(f"prereqs.{phase} must be a non-empty object")
            for rel, reqs in rels.items():
                if custom(rel):
                    continue
                if rel not in RELATIONSHIPS:
                    raise Problems(f"prereqs.{phase} relationship {rel!r} is not one of {sorted(RELATIONSHIPS)}")
                if not isinstance(reqs, dict) or not reqs:
                    raise Problems(f"prereqs.{phase}.{rel} must be a non-empty object")
                for name, rng in reqs.items():
                    check_term(name, f"prereqs.{phase}.{rel} key")
                    check_range(rng, f"prereqs.{phase}.{rel}.{name}")
        runtime = pr.get("runtime", {}).get("requires", {})
        if "PostgreSQL" not in runtime:
            raise Problems("prereqs.runtime.requires does not name PostgreSQL")
    check("prereqs", prereqs)

    def release_status():
        if meta.get("release_status") not in RELEASE_STATUS:
            raise Problems(f"release_status {meta.get('release_status')!r} is not one of {sorted(RELEASE_STATUS)}")
    if "release_status" in meta:
        check("release_status", release_status)

    def tags():
        t = meta.get("tags")
        if not isinstance(t, list) or not t:
            raise Problems("tags must be a non-empty list")
        for x in t:
            if not isinstance(x, str) or not 2 <= len(x) <= 255:
                raise Problems(f"tag {x!r} must be a string of 2 to 255 characters")
            if any(c in "/\\" or is_control(c) for c in x):
                raise Problems(f"tag {x!r} contains a slash, backslash or control character")
    if "tags" in meta:
        check("tags", tags)

    def no_index():
        ni = meta.get("no_index")
        if not isinstance(ni, dict) or not ("file" in ni or "directory" in ni):
            raise Problems("no_index must be an object with file and/or directory")
        for k, v in ni.items():
            if custom(k):
                continue
            if k not in ("file", "directory"):
                raise Problems(f"no_index has an unknown key {k!r}")
            for path in (v if isinstance(v, list) else [v]):
                check_path(path, f"no_index.{k}", root)
    if "no_index" in meta:
        check("no_index", no_index)

    def resources():
        r = meta.get("resources")
        if not isinstance(r, dict) or not r:
            raise Problems("resources must be a non-empty object")
        for k, v in r.items():
            if custom(k):
                continue
            if k == "homepage":
                check_nonempty_string(v, "resources.homepage")
            elif k in ("bugtracker", "repository"):
                if not isinstance(v, dict) or not v:
                    raise Problems(f"resources.{k} must be a non-empty object")
            else:
                raise Problems(f"resources has an unknown key {k!r}")
    if "resources" in meta:
        check("resources", resources)

    print(f"meta_json: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
