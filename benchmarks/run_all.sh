#!/usr/bin/env bash
# Every benchmark line: the four task modes at N=1,000 and N=100,000, start-up, then the server's table.
#   bash benchmarks/run_all.sh                 # nbflow vs plain Python
#   bash benchmarks/run_all.sh --vs prefect    # and Prefect 3 side by side (throwaway venv)
# Other arguments (-v, --repeat R, --prefect-max-n N, ...) are passed on to every script.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
case "${1:-}" in -h|--help) sed -n '2,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
status=0
all_args=("$@")
for n in 1000 100000; do
  for mode in sequential map submit cache-hit; do
    "$PY" benchmarks/bench_tasks.py --mode "$mode" --n "$n" "$@" || status=1
  done
done
startup_args=()
while [ $# -gt 0 ]; do  # bench_startup.py takes --vs, -v, --repeat, --prefect-repeat, --timeout
  case "$1" in
    --prefect-max-n) shift 2 ;;
    --prefect-max-n=*) shift ;;
    *) startup_args+=("$1"); shift ;;
  esac
done
"$PY" benchmarks/bench_startup.py "${startup_args[@]+"${startup_args[@]}"}" || status=1
server_args=()
set -- "${all_args[@]+"${all_args[@]}"}"
while [ $# -gt 0 ]; do  # bench_server.py takes -v, --repeat and --timeout of these
  case "$1" in
    -v|--verbose|--repeat=*|--timeout=*) server_args+=("$1"); shift ;;
    --repeat|--timeout) server_args+=("$1" "${2:-}"); shift $(( $# > 1 ? 2 : 1 )) ;;
    --vs|--prefect-max-n|--prefect-repeat) shift $(( $# > 1 ? 2 : 1 )) ;;
    *) shift ;;
  esac
done
"$PY" benchmarks/bench_server.py "${server_args[@]+"${server_args[@]}"}" || status=1
exit $status
