# Sourced by the scripts that need Node (the lab extension's build and unit tests): use the
# machine's node/npm, or install Debian's when missing and running as root (as for chromium).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "scripts: installing Debian's nodejs and npm for the JupyterLab extension" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "scripts: node and npm are not installed (sudo apt-get install nodejs npm)" >&2
    return 1 2>/dev/null || exit 1
  fi
fi
