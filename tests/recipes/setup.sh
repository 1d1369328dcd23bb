#!/usr/bin/env bash
# Makes the Python virtual environment that tests/recipes.rs runs the real
# Socket.IO and Jupyter software from: Debian's python3 (/usr/bin/python3,
# with python3-venv, installed here with apt-get when missing and run as
# root), then the pinned packages of requirements.txt beside this script.
#
#   bash tests/recipes/setup.sh            # venv in /tmp/wsgate-recipes-venv
#   WSGATE_RECIPES_VENV=DIR bash tests/recipes/setup.sh
#
# The tests find the interpreter at $WSGATE_RECIPES_PYTHON, by default
# /tmp/wsgate-recipes-venv/bin/python. A venv already made from the same
# requirements.txt is kept as it is (a stamp file records which).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${WSGATE_RECIPES_VENV:-/tmp/wsgate-recipes-venv}"
requirements="$here/requirements.txt"
stamp="$venv/.wsgate-recipes-requirements"
imports="import socketio, engineio, aiohttp, requests, websocket, jupyter_server, ipykernel"

if [ -x "$venv/bin/python" ] && cmp -s "$requirements" "$stamp" \
  && "$venv/bin/python" -c "$imports" 2>/dev/null; then
  echo "== recipes venv $venv is up to date"
  exit 0
fi

# Debian's python3 needs python3-venv for 'python3 -m venv' (ensurepip).
if ! [ -x /usr/bin/python3 ] || ! /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing python3 python3-venv"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
  else
    echo "setup.sh: /usr/bin/python3 with venv support is missing: install the Debian packages python3 and python3-venv" >&2
    exit 1
  fi
fi

echo "== making the recipes venv in $venv"
rm -rf "$venv"
/usr/bin/python3 -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$requirements"
"$venv/bin/python" -c "$imports"
cp "$requirements" "$stamp"
echo "== recipes venv ready: $venv/bin/python"
