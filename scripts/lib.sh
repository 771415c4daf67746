# Sourced by the benchmark scripts: the persistent target directory, and
# one way to build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/orderflow-target}"

# build PROFILE [CARGO ARGS…]: every binary of the workspace, in release
# or dev, and $bin the directory they land in. Always the whole workspace:
# `-p orderflow` unifies features differently and rebuilds DataFusion.
build() {
  case "$1" in
  release) cargo build --release --workspace --bins "${@:2}"; bin="$CARGO_TARGET_DIR/release" ;;
  dev) cargo build --workspace --bins "${@:2}"; bin="$CARGO_TARGET_DIR/debug" ;;
  *) echo "PROFILE must be release or dev" >&2; exit 2 ;;
  esac
}
