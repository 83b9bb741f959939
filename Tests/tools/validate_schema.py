#!/usr/bin/env python3
"""Validate JSON documents against one definition of a JSON Schema (draft 2020-12).

Usage:
    python3 Tests/tools/validate_schema.py <schema.json> <def name> <file>...

Each file is one JSON document, or newline-delimited JSON (one document per non-blank
line) when its name ends in `.ndjson`. Every document is validated against
`#/$defs/<def name>` of the schema, with `format` checking on (date-time is always
checked, with a built-in RFC 3339 checker when the optional `rfc3339-validator`
package is missing).

Prints one line per failure, `<file>[:<line>]: <JSON path>: <message>`, then a summary.
Exit status: 0 when every document is valid ("N valid"), 1 when any is not (or a file
can't be read or parsed), 2 for a usage error or an unusable schema.
"""

import json
import re
import sys

try:
    from jsonschema import Draft202012Validator, FormatChecker
    from jsonschema.exceptions import SchemaError
except ImportError:  # pragma: no cover - environment problem, not a validation result
    sys.stderr.write("validate_schema.py: the `jsonschema` package is missing (pip install jsonschema)\n")
    sys.exit(2)

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))$"
)


def _days_in_month(year, month):
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _is_rfc3339(value):
    if not isinstance(value, str):
        return True  # formats only constrain strings
    m = _RFC3339.match(value)
    if not m:
        return False
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    if not 1 <= month <= 12 or not 1 <= day <= _days_in_month(year, month):
        return False
    if hour > 23 or minute > 59 or second > 60:
        return False
    if m.group(9) is not None and (int(m.group(9)) > 23 or int(m.group(10)) > 59):
        return False
    return True


def make_format_checker():
    checker = FormatChecker()
    if "date-time" not in checker.checkers:
        checker.checks("date-time")(_is_rfc3339)
    return checker


def load_documents(path):
    """Yields (label, document) pairs; raises ValueError with a readable message."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror}")
    if path.endswith(".ndjson"):
        docs = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                docs.append((f"{path}:{number}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number}: not JSON: {e.msg} (column {e.colno})")
        return docs
    try:
        return [(path, json.loads(text))]
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON: {e.msg} (line {e.lineno}, column {e.colno})")


def make_validator(schema, def_name):
    defs = schema.get("$defs") or {}
    if def_name not in defs:
        known = ", ".join(sorted(defs))
        raise KeyError(f"no definition {def_name!r} in the schema; it has: {known}")
    # A schema whose root is a reference into the same `$defs` (same `$id`, so every
    # `#/$defs/...` reference resolves exactly as in the original document).
    wrapper = {k: schema[k] for k in ("$schema", "$id", "$defs") if k in schema}
    wrapper["$ref"] = f"#/$defs/{def_name}"
    return Draft202012Validator(wrapper, format_checker=make_format_checker())


def error_lines(validator, label, document):
    errors = sorted(validator.iter_errors(document), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    lines = []
    for error in errors:
        # For anyOf/oneOf failures, the most specific sub-error says more than the summary.
        if error.context:
            deepest = max(error.context, key=lambda e: len(e.absolute_path))
            if len(deepest.absolute_path) > len(error.absolute_path):
                error = deepest
        lines.append(f"{label}: {error.json_path}: {error.message}")
    return lines


def main(argv):
    if len(argv) < 4 or argv[1] in ("-h", "--help"):
        sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
        return 2
    schema_path, def_name, files = argv[1], argv[2], argv[3:]
    try:
        with open(schema_path, "r", encoding="utf-8") as f:
            schema = json.load(f)
        Draft202012Validator.check_schema(schema)
        validator = make_validator(schema, def_name)
    except (OSError, json.JSONDecodeError) as e:
        sys.stderr.write(f"{schema_path}: cannot load the schema: {e}\n")
        return 2
    except SchemaError as e:
        sys.stderr.write(f"{schema_path}: not a valid draft 2020-12 schema: {e.message} at {e.json_path}\n")
        return 2
    except KeyError as e:
        sys.stderr.write(f"{schema_path}: {e.args[0]}\n")
        return 2

    valid = invalid = 0
    for path in files:
        try:
            documents = load_documents(path)
        except ValueError as e:
            print(e)
            invalid += 1
            continue
        for label, document in documents:
            failures = error_lines(validator, label, document)
            if failures:
                invalid += 1
                for line in failures:
                    print(line)
            else:
                valid += 1

    if invalid:
        print(f"{valid} valid, {invalid} invalid")
        return 1
    print(f"{valid} valid")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
