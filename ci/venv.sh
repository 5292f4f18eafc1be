#!/bin/sh
# Creates the project's venv ($2, with python $1) holding the package (editable) and its test
# dependencies. Called by the Makefile; `make demo` and `make test` start here on a fresh clone.
#
# uv, when it can be fetched from PyPI, installs in about 25 s what pip takes 60 s for (pip
# downloads and builds one package at a time; measured on this project's 2-core CI machine).
# uv is a build tool here, never a runtime dependency, and kept out of the venv in .uv/.
# Without it (no wheel for this platform, a registry uv cannot reach), pip does the same job.
set -eu
python=$1
venv=$2
uv_dir=.uv

quiet() { grep -v "is ignored: it is neither a file nor a directory" >&2 || true; }

if [ ! -x "$uv_dir/bin/uv" ]; then
    PIP_ROOT_USER_ACTION=ignore "$python" -m pip install --quiet --disable-pip-version-check \
        --target "$uv_dir" "uv>=0.5" 2>&1 | quiet || true
fi
if [ -x "$uv_dir/bin/uv" ] &&
    "$uv_dir/bin/uv" venv --quiet --seed --python "$python" "$venv" &&
    "$uv_dir/bin/uv" pip install --quiet --python "$venv/bin/python" -e '.[test]'; then
    exit 0
fi

echo "ci/venv.sh: uv unavailable or failed; installing with pip" >&2
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
