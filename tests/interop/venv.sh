# Sourced: HFPY = the python of BUILD/venv-hf (Debian's python3 and torch, plus transformers,
# safetensors and tensorboard from PyPI), made on first use; exits 77 when PyPI is unreachable.
make_hf_venv() {
  local build=$1 v=$1/venv-hf
  HFPY=$v/bin/python
  (
    flock 9
    if [ ! -f "$v/.ready" ]; then
      rm -rf "$v"
      /usr/bin/python3 -m venv --system-site-packages "$v" || exit 77
      # transformers 4.44 is the last line that runs on Debian's torch 1.13
      if ! "$v/bin/pip" install -q --disable-pip-version-check \
          "transformers>=4.30,<4.45" safetensors tensorboard >"$v.log" 2>&1; then
        echo "SKIP: cannot install transformers from PyPI (see $v.log)" >&2
        rm -rf "$v"
        exit 77
      fi
      touch "$v/.ready"
    fi
  ) 9>"$build/venv-hf.lock" || exit $?
}
