#!/usr/bin/env bash
# Before the test suite: the report's browser tests (pytest -m browser) need Debian's
# chromium. Installed here when this user may (root with apt-get, as on CI); otherwise
# one line says which tests will be skipped and how to get them. Never fails by itself:
# with S2R_REQUIRE_BROWSER=1 (CI) the tests fail instead of skipping.
if command -v chromium >/dev/null 2>&1 || [ -n "${S2R_CHROMIUM:-}" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium for the report's browser tests (apt-get install chromium)" >&2
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      && command -v chromium >/dev/null 2>&1; then
    exit 0
  fi
  echo "could not install chromium" >&2
fi
echo "NOTE: chromium is not installed: the 2 browser tests (pytest -m browser, in" \
  "tests/pilot/test_pilot.py) will be SKIPPED. To run them: sudo apt-get install chromium" \
  "(or set S2R_CHROMIUM=/path/to/chromium), then make test again." >&2
